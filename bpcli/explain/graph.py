"""Section 5: the computational graph after surgery, with every weight and bias made a node so that
the chain rule can be read off it, and its listings."""

from __future__ import annotations

from dataclasses import dataclass


from bpcli.explain.base import DRAW_NEURONS, DRAW_WEIGHTS, LIST_NEURONS, Spec, count
from bpcli.explain.sections import COST_FORMULAS, QUADRATIC

# -- 5. the computational graph after surgery --------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A node of the computational graph; `size` is how many scalars it stands for."""

    id: str
    label: str
    kind: str  # input | weight | bias | neuron | output | target | cost
    l: int  # its layer (0 for y and C)
    size: int
    computes: str = ""  # for nodes with inputs: what they compute from them


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str


@dataclass
class Graph:
    """The network drawn as a computational graph whose nodes include every weight and bias."""

    title: str
    nodes: list[Node]
    edges: list[Edge]
    detail: dict[int, str]  # per layer l = 1..L: how its activations and weights are drawn
    notes: list[str]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def inputs(self, node_id: str) -> list[Node]:
        return [self.node(e.src) for e in self.edges if e.dst == node_id]


def build_graph(s: Spec) -> Graph:
    """Activations become nodes as usual; surgery adds the weights and biases as nodes that feed each
    neuron, which then multiplies, adds and applies sigma itself (instead of edges carrying products).

    A layer with at most DRAW_NEURONS neurons is drawn neuron by neuron, and then its weights either one
    node per w^l_jk (at most DRAW_WEIGHTS of them) or one node per row w^l_(j,:); a larger layer is one
    node a^l, fed by one node w^l and one node b^l.
    """
    L = s.L
    nodes: list[Node] = []
    edges: list[Edge] = []
    detail: dict[int, str] = {}
    drawn = {l: s.n(l) <= DRAW_NEURONS for l in range(1, L + 1)}

    def add(node: Node, *sources: str) -> None:
        nodes.append(node)
        edges.extend(Edge(src, node.id) for src in sources)

    # a^(l-1) as the node ids that feed layer l.
    outputs: list[str]
    if drawn[1]:
        outputs = [f"a1_{k}" for k in range(s.n(1))]
        for k in range(s.n(1)):
            add(Node(f"a1_{k}", f"x_{k}", "input", 1, 1))
        detail[1] = "a node per input x_k = a^1_k"
    else:
        outputs = ["a1"]
        add(Node("a1", f"a^1 = x ({count(s.n(1))})", "input", 1, s.n(1)))
        detail[1] = f"collapsed to one node for all {count(s.n(1))} inputs"

    for l in s.layers:
        n, n_prev, sigma = s.n(l), s.n(l - 1), s.sigma(l)
        softmax_out = l == L and s.output == "softmax"
        prev = f"a^{l - 1}"
        if not drawn[l]:
            add(Node(f"w{l}", f"w^{l} ({n} x {count(n_prev)})", "weight", l, n * n_prev))
            add(Node(f"b{l}", f"b^{l} ({n})", "bias", l, n))
            add(Node(f"a{l}", f"a^{l} ({n})", "output" if l == L else "neuron", l, n,
                     f"{sigma}(w^{l} {prev} + b^{l})"), f"w{l}", f"b{l}", *outputs)
            outputs = [f"a{l}"]
            detail[l] = f"collapsed to one node each for w^{l}, b^{l} and a^{l}"
            continue
        each = drawn[l - 1] and n * n_prev <= DRAW_WEIGHTS
        # With a softmax output, a^L_j depends on all of z^L: neuron j computes z^L_j only, and one
        # node applies softmax to the whole layer.
        name = "z" if softmax_out else "a"
        for j in range(n):
            if each:
                for k in range(n_prev):
                    add(Node(f"w{l}_{j}_{k}", f"w^{l}_({j},{k})", "weight", l, 1))
                weights = [f"w{l}_{j}_{k}" for k in range(n_prev)]
            else:
                add(Node(f"w{l}_{j}", f"w^{l}_({j},:) ({count(n_prev)})", "weight", l, n_prev))
                weights = [f"w{l}_{j}"]
            add(Node(f"b{l}_{j}", f"b^{l}_{j}", "bias", l, 1))
            z_j = f"sum_k w^{l}_({j},k) {prev}_k + b^{l}_{j}"
            kind = "output" if l == L and not softmax_out else "neuron"
            add(Node(f"{name}{l}_{j}", f"{name}^{l}_{j}", kind, l, 1, z_j if softmax_out else f"{sigma}({z_j})"),
                *weights, f"b{l}_{j}", *outputs)
        outputs = [f"{name}{l}_{j}" for j in range(n)]
        if softmax_out:
            add(Node(f"a{l}", f"a^{l} = softmax(z^{l})", "output", l, n, f"softmax(z^{l}), {n} values"), *outputs)
            outputs = [f"a{l}"]
        detail[l] = "a node per neuron, fed by " + (f"a node per weight w^{l}_jk" if each
                                                    else f"a node per weight row w^{l}_(j,:)")

    add(Node("y", f"y ({s.n(L)})", "target", 0, s.n(L)))
    formula = COST_FORMULAS.get((s.cost, s.output), QUADRATIC)[1].replace("^L", f"^{L}")
    add(Node("C", "C", "cost", 0, 1, formula), *outputs, "y")

    notes = [
        "Surgery: the usual drawing has activations as nodes and weights on the edges, but a computational "
        "graph gives derivatives only with respect to its nodes. So each weight and bias becomes a node "
        "feeding its neuron, which multiplies, adds and applies sigma itself.",
        "To differentiate in a single weight it is enough to add just that weight as a node.",
    ]
    if s.output == "softmax":
        notes.append(f"softmax couples the output layer: neuron j computes z^{L}_j, and one node forms "
                     f"a^{L} = softmax(z^{L}) from all of them.")
    title = f"{s.name} {list(s.sizes)}: weights and biases are nodes"
    return Graph(title, nodes, edges, detail, notes)


def graph_listing(graph: Graph, run: int = 3) -> list[tuple[Node, list[str]]]:
    """Every node with inputs and its input labels, runs of more than `run` like nodes shortened to
    'first … last (count)': the graph as a readable list, in the order it computes."""
    out = []
    for node in graph.nodes:
        inputs = graph.inputs(node.id)
        if not inputs:
            continue
        labels: list[str] = []
        i = 0
        while i < len(inputs):
            j = i
            while j + 1 < len(inputs) and (inputs[j + 1].kind, inputs[j + 1].l) == (inputs[i].kind, inputs[i].l):
                j += 1
            group = inputs[i : j + 1]
            if len(group) > run:
                labels.append(f"{group[0].label} … {group[-1].label} ({len(group)})")
            else:
                labels.extend(n.label for n in group)
            i = j + 1
        out.append((node, labels))
    return out


def graph_rows(graph: Graph, keep: int = LIST_NEURONS) -> list[tuple[Node, list[str]] | int]:
    """`graph_listing` with long runs of like nodes (one layer's neurons, all wired the same way)
    shortened to the first three, the count of those left out, and the last."""
    rows = graph_listing(graph)
    out: list[tuple[Node, list[str]] | int] = []
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and (rows[j + 1][0].l, rows[j + 1][0].kind) == (rows[i][0].l, rows[i][0].kind):
            j += 1
        run = rows[i : j + 1]
        out += run if len(run) <= keep else [*run[:3], len(run) - 4, run[-1]]
        i = j + 1
    return out
