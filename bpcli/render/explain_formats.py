"""The explanation of `bpcli explain` as text for other tools: Markdown (every section), and the graph
after surgery as Mermaid or Graphviz DOT. The writers live here, beside the Rich drawing, so that the
model (`bpcli.explain`) never imports a renderer; the table that picks a writer per section moves with
the writers. The rows of the trace are shared with the Rich drawing.
"""

from __future__ import annotations

from typing import Any, Sequence

from bpcli.explain import (
    Explanation,
    Graph,
    SECTIONS,
    TITLES,
    Trace,
    count,
    deriv,
    graph_rows,
    human_bytes,
    num,
    shape,
)


MERMAID_STYLE = {
    "input": "fill:#e8f0fe,stroke:#4a6fa5",
    "weight": "fill:#fff4d6,stroke:#b8860b",
    "bias": "fill:#fde7e7,stroke:#b44",
    "neuron": "fill:#e6f4ea,stroke:#2e7d32",
    "output": "fill:#d4edda,stroke:#1b5e20",
    "target": "fill:#eeeeee,stroke:#666",
    "cost": "fill:#f3e5f5,stroke:#6a1b9a",
}
DOT_STYLE = {
    "input": 'shape=box, style=filled, fillcolor="#e8f0fe"',
    "weight": 'shape=box, style="rounded,filled", fillcolor="#fff4d6"',
    "bias": 'shape=box, style="rounded,filled", fillcolor="#fde7e7"',
    "neuron": 'shape=ellipse, style=filled, fillcolor="#e6f4ea"',
    "output": 'shape=ellipse, style=filled, fillcolor="#d4edda"',
    "target": 'shape=box, style=filled, fillcolor="#eeeeee"',
    "cost": 'shape=doublecircle, style=filled, fillcolor="#f3e5f5"',
}


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (renders on GitHub inside a ```mermaid block)."""
    lines = ["flowchart LR", f"  %% {graph.title}"]
    for n in graph.nodes:
        label = n.label.replace('"', "'")
        lines.append(f'  {n.id}(["{label}"])' if n.kind in ("neuron", "output") else f'  {n.id}["{label}"]')
    lines += [f"  {e.src} --> {e.dst}" for e in graph.edges]
    for kind, style in MERMAID_STYLE.items():
        ids = [n.id for n in graph.nodes if n.kind == kind]
        if ids:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT (render with `dot -Tsvg`)."""
    lines = ["digraph backprop {", f'  label="{graph.title}";', "  labelloc=t;", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=11];']
    for n in graph.nodes:
        label = n.label.replace('"', "'")
        lines.append(f'  {n.id} [label="{label}", {DOT_STYLE[n.kind]}];')
    lines += [f"  {e.src} -> {e.dst};" for e in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- Markdown ------------------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table; every cell in code style unless it is plain prose (marked by a leading '~')."""

    def cell(v: Any) -> str:
        text = str(v)
        if text.startswith("~"):
            return text[1:].replace("|", "\\|")
        return f"`{text}`" if text else ""

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _prose(text: str) -> str:
    return "~" + text


def _md_notation(model: Explanation) -> list[str]:
    assert model.notation is not None
    rows = [(s.symbol, s.general, s.concrete, _prose(s.meaning), s.code) for s in model.notation]
    return _md_table(["symbol", "type", f"for {model.name}", "meaning", f"in the code (m = {model.batch_size})"], rows)


def _md_layers(model: Explanation) -> list[str]:
    ls = model.layers

    def dims(d: tuple[int, ...] | None) -> str:
        return " x ".join(str(v) for v in d) if d else "-"

    rows = [(r.l, r.n, r.activation or "input", dims(r.w), dims(r.b), dims(r.z), dims(r.a), dims(r.delta),
             shape(r.batch), count(r.weights), count(r.biases), count(r.params)) for r in ls.layers]
    lines = _md_table(["l", "n_l", "sigma", "w^l", "b^l", "z^l", "a^l", "delta^l", "z[l], a[l], delta[l]",
                       "weights", "biases", "params"], rows)
    lines += ["", f"n_w = {count(ls.n_w)} weights, n_b = {count(ls.n_b)} biases, n_w + n_b = "
              f"{count(ls.n_params)} parameters: {count(ls.bytes)} bytes ({human_bytes(ls.bytes)}) in {ls.dtype}."]
    return lines


def _md_cost(model: Explanation) -> list[str]:
    c = model.cost
    assert c is not None
    lines = [f"Cost: {c.name} with a {c.output} output, i.e. {c.kind}.", "",
             "```text", f"per example   {c.per_example}", f"mini-batch    {c.batch_mean}",
             f"type          {c.general_type}", f"here          {c.concrete_type}",
             f"output error  {c.output_delta}", "```", "", f"Why that output error: {c.output_delta_why}.", ""]
    lines += [f"- {remark}" for remark in c.fixed]
    lines += ["", "The domain unrolled: w = (w^2, w^3, ...) with each w^l row by row (j, then k), "
              "b likewise, and theta = (w, b).", ""]
    lines += _md_table(["block", "shape", "size", "in w or b", "in theta", "one entry"],
                       [(b.symbol, " x ".join(map(str, b.shape)), count(b.size), f"{b.kind}[{b.offset}:{b.end}]",
                         f"theta[{b.theta_offset}:{b.theta_end}]", b.index) for b in c.blocks])
    return lines


def _md_equations(model: Explanation) -> list[str]:
    e = model.equations
    assert e is not None
    lines = ["Why it is an induction and not one chain rule:", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(e.why, 1)]
    lines += ["", "The cost seen from layer l (C = C^l(z^l), delta^l = grad C^l at z^l):", ""]
    lines += _md_table(["l", "C^l", "definition"], [(i.l, f"C^{i.l} : {i.type}", i.definition) for i in e.induction])
    for title, rows in (("Forward pass", e.forward), ("Backward pass (from l = L down)", e.backward),
                        ("Gradients", e.gradients)):
        lines += ["", f"{title}:", ""]
        lines += _md_table(["l", "equation", "shapes (one example)", "code (one batch)", "uses"],
                           [(r.l, r.math, r.shapes, r.code, _prose(r.uses)) for r in rows])
    lines += ["", "Order of the computation:", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(e.order, 1)]
    return lines


def _md_graph(model: Explanation) -> list[str]:
    g = model.graph
    assert g is not None
    lines = [f"- {note}" for note in g.notes]
    lines += [f"- layer {l}: {text}" for l, text in g.detail.items()]
    lines += ["", f"{len(g.nodes)} nodes, {len(g.edges)} edges. Each node with inputs, in the order of "
              "computation (the Mermaid graph below has them all):", ""]
    rows = [(_prose("⋮"), _prose(f"{row} more, wired the same way"), "") if isinstance(row, int)
            else (row[0].label, row[0].computes, ", ".join(row[1])) for row in graph_rows(g)]
    lines += _md_table(["node", "computes", "from"], rows)
    lines += ["", "```mermaid", to_mermaid(g).rstrip("\n"), "```"]
    return lines


def trace_rows(t: Trace) -> list[tuple[str, str, str]]:
    """The chain from w^l_jk up to C and back, as (quantity, value, where it comes from) rows:
    the forward values first, then delta^l_j and the derivative, then the checks."""
    l, j, k, L = t.l, t.j, t.k, t.L
    w_jk = f"w^{l}_({j},{k})"
    rows = [
        (w_jk, num(t.w), f"the weight from neuron {k} of layer {l - 1} to neuron {j} of layer {l}"),
        (f"a^{l - 1}_{k}", num(t.a_prev),
         f"the input x_{k}" if l == 2 else f"forward pass: {t.sigma_below}(z^{l - 1}_{k})"),
        (f"z^{l}_{j}", num(t.z), f"forward pass: sum_k w^{l}_({j},k) a^{l - 1}_k + b^{l}_{j}"),
        (f"a^{l}_{j}", num(t.a), f"{t.sigma}(z^{l})_{j}" if t.sigma == "softmax" else f"{t.sigma}(z^{l}_{j})"),
    ]
    if t.sigma_prime is not None:
        rows.append((f"{t.sigma}'(z^{l}_{j})", num(t.sigma_prime), f"from the stored z^{l}_{j}"))
    rows.append(("C_x", num(t.cost), f"label {t.label_text}; the network predicts {t.prediction}"))
    if l == L:
        rows.append((f"y_{j}", num(t.y if t.y is not None else 0.0), "the target"))
        if t.output_grad is not None:
            rows.append((f"dC/da^{L}_{j}", num(t.output_grad), "the cost's derivative in the output"))
    else:
        for i, how, n in t.upstream:
            rows.append((f"delta^{i}", f"{n} values", how))
        rows.append((f"sum_i w^{l + 1}_(i,{j}) delta^{l + 1}_i", num(t.weighted_sum or 0.0),
                     f"{t.n_terms} terms, the largest listed below"))
    rows += [
        (f"delta^{l}_{j}", num(t.delta), t.delta_rule),
        (f"dC/dw^{l}_({j},{k})", deriv(t.product), f"a^{l - 1}_{k} * delta^{l}_{j}"),
        (f"dw[{l}][{j}, {k}]", deriv(t.backprop), "Network.backward, the backprop gradient entry"),
        ("central difference", deriv(t.numerical), f"(C(w + h) - C(w - h)) / 2h in {w_jk}, h = {t.h:g}"),
        ("difference", f"{t.abs_diff:.3e}", f"relative {t.rel_diff:.3e}"),
    ]
    return rows


def term_rows(t: Trace) -> list[tuple[str, str, str, str]]:
    """The largest terms w^(l+1)_ij delta^(l+1)_i of delta^l_j's sum, then the rest in one row."""
    rows = [(str(term.i), num(term.w), num(term.delta), num(term.product)) for term in t.terms]
    if t.n_terms > len(t.terms):
        rows.append((f"{t.n_terms - len(t.terms)} others", "", "", num(t.rest or 0.0)))
    return rows


def _md_trace(model: Explanation) -> list[str]:
    t = model.trace
    assert t is not None
    lines = [f"dC/dw^{t.l}_({t.j},{t.k}) for example {t.example} (label {t.label_text}) of {t.source}. The one "
             f"weight added as a node, and its only way to C: `{' -> '.join(t.path)}`.", ""]
    lines += _md_table(["quantity", "value", "from"], [(q, v, _prose(how)) for q, v, how in trace_rows(t)])
    if t.terms:
        lines += ["", f"The terms of delta^{t.l}_{t.j}'s sum, largest first:", ""]
        lines += _md_table(["i", f"w^{t.l + 1}_(i,{t.j})", f"delta^{t.l + 1}_i", "product"], term_rows(t))
    lines += [""] + [f"- {note}" for note in t.notes]
    return lines


MD_SECTIONS = {
    "notation": _md_notation,
    "layers": _md_layers,
    "cost": _md_cost,
    "equations": _md_equations,
    "graph": _md_graph,
    "trace": _md_trace,
}


def to_markdown(model: Explanation) -> str:
    """The explanation as deterministic Markdown: tables, code spans and a Mermaid graph."""
    ls = model.layers
    lines = [f"# bpcli explain: {model.name}", "",
             f"Network {list(model.sizes)} (L = {model.L}), {model.source}; "
             f"C : R^{count(ls.n_params)} -> R. {model.index_note}"]
    for number, name in enumerate(SECTIONS, 1):
        if name in model.sections:
            lines += ["", f"## {number}. {TITLES[name]}", ""]
            lines += MD_SECTIONS[name](model)
    return "\n".join(lines) + "\n"
