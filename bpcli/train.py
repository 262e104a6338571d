"""Training: mini-batch gradient descent with backprop, evaluation, metrics and checkpoints.

`Trainer` owns the loop; it reports through callbacks and returns plain data, so the same code serves
`bpcli train`, the benchmarks and the tests. Interrupts are honoured between batches: the position
inside the epoch is checkpointed, so a resumed run continues with bitwise-identical parameters.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from bpcli import checkpoint as ckpt_io
from bpcli import resources
from bpcli.config import Config
from bpcli.data import Dataset, Split
from bpcli.errors import CheckpointError, ConfigError, DivergenceError
from bpcli.monitor import LayerMonitor
from bpcli.network import Network, Workspace
from bpcli.optim import Optimizer, learning_rate
from bpcli.rundir import EpochMetrics, RunFiles, metrics_bytes  # noqa: F401 - RunFiles re-exported
from bpcli.threads import auto_threads, blas_threads

Array = np.ndarray


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: Array  # (classes, classes): row = true label, column = predicted label


@dataclass
class Position:
    """Where a run stands: epochs completed, batches done in the current epoch, and that epoch's
    running sums, so an interrupted epoch can be finished exactly."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    epoch_rng_state: dict = field(default_factory=dict)


class Interrupted(Exception):
    """Raised by the loop when `should_stop` returned true between two batches."""


def evaluate(net: Network, split: Split, batch_size: int | None = None) -> Evaluation:
    """Mean cost, accuracy and confusion matrix of `net` on a whole split, in large batches.

    Large batches make each layer one big matrix product; one workspace serves all of them, so the
    (batch_size, n_l) arrays are allocated (and their pages faulted in) once per call, not per batch.
    """
    classes, n = net.sizes[-1], len(split)
    # At most resources.EVAL_BATCH (2,500) rows at a time, fewer for wide networks, so that whatever
    # trains can be evaluated.
    batch_size = batch_size or resources.eval_batch_size(net.sizes, net.dtype)
    loss = 0.0
    predicted = np.empty(n, dtype=np.int64)
    workspace = Workspace(net, min(batch_size, n)) if n else None
    for i in range(0, n, batch_size):
        x = split.x[i : i + batch_size]
        cache = net.forward(x, workspace=workspace.rows(len(x)))
        loss += net.cost_value(cache, split.y[i : i + batch_size]) * len(x)
        np.argmax(cache.a[net.L], axis=1, out=predicted[i : i + batch_size])
    # A histogram of (true, predicted) pairs: one pass, where np.add.at would loop per example.
    confusion = np.bincount(split.labels * classes + predicted, minlength=classes * classes)
    confusion = confusion.reshape(classes, classes).astype(np.int64, copy=False)
    return Evaluation(loss / max(1, n), float((predicted == split.labels).mean()) if n else 0.0, confusion)


def check_compatible(cfg: Config, data: Dataset) -> None:
    """The config's network and batch size must fit the data."""
    layers = cfg.model.layers
    if layers[0] != data.input_size:
        raise ConfigError(
            f"model.layers[0]: input size {layers[0]} does not match the data ({data.input_size} values per "
            f"example in {cfg.data.path}); set it to {data.input_size}"
        )
    if layers[-1] != data.classes:
        raise ConfigError(
            f"model.layers[-1]: output size {layers[-1]} does not match the {data.classes} classes in "
            f"{cfg.data.path}; set it to {data.classes}"
        )
    if cfg.training.batch_size > len(data.train):
        raise ConfigError(
            f"training.batch_size: {cfg.training.batch_size} is larger than the training set "
            f"({len(data.train)} examples); lower it"
        )


class Trainer:
    """Trains `net` on `data.train` as `cfg.training` says, one epoch per `run_epoch` call."""

    def __init__(self, cfg: Config, data: Dataset, net: Network | None = None, monitor: bool = True) -> None:
        check_compatible(cfg, data)
        if cfg.training.threads == 0:
            # "auto" is decided once, here, and kept in the config the checkpoints store: BLAS results
            # differ in the last bits with the thread count, so a resumed run goes on with as many.
            cfg = replace(cfg, training=replace(cfg.training, threads=auto_threads()))
        t = cfg.training
        self.cfg = cfg
        self.data = data
        # One generator: it initializes the network, then shuffles every epoch.
        self.rng = np.random.default_rng(t.seed)
        self.net = net if net is not None else Network.from_config(cfg.model, self.rng, t.dtype)
        self.params = self.net.params()
        is_weight = [i % 2 == 0 for i in range(len(self.params))]
        self.optimizer = Optimizer(t.optimizer, self.params, is_weight, decay=t.l2 / len(data.train))
        self.steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
        self.position = Position()
        self.best_accuracy = -1.0
        # Per-layer learning statistics (bpcli/monitor.py); on by default, as they cost about 1% of an
        # epoch (bench/epoch.py --monitor measures it).
        self.monitor = LayerMonitor(self.net, self.steps_per_epoch) if monitor else None

    # -- the loop -------------------------------------------------------------------------------

    def learning_rate(self, step: int | None = None) -> float:
        t = self.cfg.training
        step = self.position.step if step is None else step
        return learning_rate(t.schedule, t.learning_rate, step, self.steps_per_epoch, t.epochs)

    def likely_cause(self) -> str:
        """What to change after a divergence. L2 decay shrinks each weight by eta lambda / n per update: above
        1 that overshoots zero and grows (training.l2=1e308 was blamed on the learning rate)."""
        t = self.cfg.training
        step = t.learning_rate * t.l2 / max(1, len(self.data.train))
        if step > 1:
            return (f"the L2 decay step eta * l2 / n is {step:.3g} per update (above 1 it overshoots zero): "
                    "lower training.l2")
        return f"the learning rate ({t.learning_rate}) is likely too high: lower training.learning_rate"

    def run_epoch(
        self,
        on_batch: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EpochMetrics:
        """Train one epoch (or the rest of an interrupted one) and measure validation.

        on_batch(examples_done) is called after each batch; should_stop() is asked between batches
        and, when true, stops the loop with `Interrupted` (the position is then ready to checkpoint).
        """
        pos, net, t = self.position, self.net, self.cfg.training
        x, y, labels = self.data.train.x, self.data.train.y, self.data.train.labels
        n, m = len(labels), t.batch_size
        if pos.batch == 0:
            pos.epoch_rng_state = self.rng.bit_generator.state
        else:
            # Resuming mid-epoch: replay the epoch's permutation from the generator state it began with.
            self.rng.bit_generator.state = pos.epoch_rng_state
        order = self.rng.permutation(n)
        L = net.L
        # The targets are small (n x classes): put them in the epoch's order once, so that a batch's y
        # and labels are slices. The inputs are large (n x 784): gathered batch by batch into x_buf.
        y, labels = y[order], labels[order]
        # Every batch-sized array the loop needs, made once per epoch and reused by every batch: the
        # network's z, a, delta, dw, db (Workspace) and the gathered x.
        workspace = Workspace(net, m)
        x_buf = np.empty((m, x.shape[1]), dtype=x.dtype)
        # BLAS threads are those in effect (fit applies training.threads). Measured with bench/epoch.py
        # on an idle 2-core machine, 2 threads beat 1 for batches of 64 (0.39 vs 0.44 s per epoch) and
        # 128 (2.2 vs 3.9 s for [784, 512, 512, 10]); batches of 10 make products too small for
        # OpenBLAS to split. Under load from other processes 1 thread is the robust choice.
        started = time.perf_counter()
        eta = self.learning_rate()
        monitor = self.monitor
        if monitor is not None:
            monitor.start_epoch()
        for batch in range(pos.batch, self.steps_per_epoch):
            if should_stop is not None and should_stop():
                if batch == 0:
                    # Stopped before the first batch: rewind the generator to before this epoch's
                    # shuffle, so the checkpoint (batch 0) draws the same permutation on resume.
                    self.rng.bit_generator.state = pos.epoch_rng_state
                raise Interrupted
            rows = slice(batch * m, (batch + 1) * m)
            idx, yb = order[rows], y[rows]
            k = len(idx)
            # One gather per batch into a reused buffer. mode="clip" because the default "raise" makes
            # take() buffer its output and copy it again; the indices come from a permutation of n.
            xb = x.take(idx, axis=0, out=x_buf[:k], mode="clip")
            ws = workspace.rows(k)
            cache = net.forward(xb, workspace=ws)
            loss = float(net.cost.running_value(cache.z[L], cache.a[L], yb, net.output))
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"training diverged at epoch {pos.epoch + 1}, batch {batch + 1}: the loss is {loss}; "
                    f"{self.likely_cause()}"
                )
            pos.loss_sum += loss * k
            pos.correct += int(np.count_nonzero(cache.a[L].argmax(axis=1) == labels[rows]))
            pos.seen += k
            eta = self.learning_rate()
            # Backprop computes the multiple of the gradient that the optimizer uses (eta g for SGD
            # and momentum): eta then scales the small delta^L instead of every dw^l, db^l.
            scale = self.optimizer.gradient_scale(eta)
            watch = monitor is not None and monitor.sample(batch)
            if watch:
                monitor.forward(cache)  # type: ignore[union-attr]
            grads = net.backward(cache, yb, workspace=ws, scale=scale)
            if watch:
                monitor.backward(grads, scale)  # type: ignore[union-attr]
                monitor.before_step()  # type: ignore[union-attr]
            self.optimizer.step(self.params, [g for l in net.layers for g in (grads.dw[l], grads.db[l])], eta, scale)
            if watch:
                monitor.after_step()  # type: ignore[union-attr]
            pos.step += 1
            pos.batch = batch + 1
            if on_batch is not None:
                on_batch(min(pos.batch * m, n))
        seconds = time.perf_counter() - started
        if not all(np.isfinite(p).all() for p in self.params):
            raise DivergenceError(
                f"training diverged in epoch {pos.epoch + 1}: a parameter is not finite; {self.likely_cause()}"
            )
        started = time.perf_counter()
        val = evaluate(net, self.data.validation) if len(self.data.validation) else None
        eval_seconds = time.perf_counter() - started
        metrics = EpochMetrics(
            epoch=pos.epoch + 1,
            train_loss=pos.loss_sum / max(1, pos.seen),
            train_accuracy=pos.correct / max(1, pos.seen),
            val_loss=val.loss if val else None,
            val_accuracy=val.accuracy if val else None,
            learning_rate=eta,
            seconds=seconds,
            eval_seconds=eval_seconds,
            layers=[asdict(r) for r in monitor.epoch_stats()] if monitor is not None else None,
        )
        self.position = Position(epoch=pos.epoch + 1, step=pos.step)
        return metrics

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> ckpt_io.Checkpoint:
        pos = self.position
        state = {"rng": self.rng.bit_generator.state, "position": asdict(pos), "optimizer_t": self.optimizer.t}
        return ckpt_io.Checkpoint(
            config=self.cfg,
            network=self.net,
            optimizer_state=self.optimizer.state,
            epoch=pos.epoch,
            step=pos.step,
            rng_state=state,
            best_accuracy=self.best_accuracy,
        )

    def restore(self, ckpt: ckpt_io.Checkpoint) -> None:
        """Continue from `ckpt`: parameters, optimizer state, generator and position inside the run.

        `checkpoint.load` has checked every field on its own; what only the data can tell is checked
        here: the position must lie inside an epoch of this training set."""
        batch = ckpt.batch
        if batch > self.steps_per_epoch:
            raise CheckpointError(
                f"checkpoint of epoch {ckpt.epoch}: its position is batch {batch}, beyond the {self.steps_per_epoch} "
                "batches of an epoch of this data; it is damaged or belongs to another dataset: resume from best.npz "
                "or start a new run"
            )
        for l in self.net.layers:
            self.net.w[l][...] = ckpt.network.w[l]
            self.net.b[l][...] = ckpt.network.b[l]
        for key, value in ckpt.optimizer_state.items():
            if key in self.optimizer.state and self.optimizer.state[key].shape == value.shape:
                self.optimizer.state[key][...] = value
        state = ckpt.rng_state
        self.optimizer.t = int(state.get("optimizer_t", ckpt.step))
        self.rng.bit_generator.state = state["rng"]
        self.position = Position(**state["position"])
        self.best_accuracy = ckpt.best_accuracy


@dataclass
class Summary:
    """The outcome of `fit`: what `--json` prints (confusion aside) and the final table shows."""

    test_accuracy: float
    test_loss: float
    epochs: int
    best_epoch: int | None
    best_val_accuracy: float | None
    train_seconds: float  # training compute in this session
    run_train_seconds: float  # training compute over all the run's epochs, earlier sessions included
    seconds: float  # wall time of this session
    run_dir: str
    confusion: Array

    def to_json(self) -> dict:
        out = asdict(self)
        out["confusion"] = self.confusion.tolist()
        return out


def fit(
    trainer: Trainer,
    files: RunFiles,
    on_epoch_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[EpochMetrics], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    started: float | None = None,
) -> Summary:
    """Run the remaining epochs, writing metrics.jsonl, last.npz and best.npz after each, then test.

    On `Interrupted` the mid-epoch position is saved to last.npz before the exception propagates; on
    `DivergenceError` nothing is written, so last.npz stays the last good checkpoint. NumPy's overflow
    warnings are silenced: overflow on the way to divergence is detected and reported by the loop, and
    the warnings would only add noise above that message.
    """
    with blas_threads(trainer.cfg.training.threads), np.errstate(over="ignore", invalid="ignore"):
        return _fit(trainer, files, on_epoch_start, on_batch, on_epoch_end, should_stop, started)


def _fit(
    trainer: Trainer,
    files: RunFiles,
    on_epoch_start: Callable[[int], None] | None,
    on_batch: Callable[[int], None] | None,
    on_epoch_end: Callable[[EpochMetrics], None] | None,
    should_stop: Callable[[], bool] | None,
    started: float | None,
) -> Summary:
    started = time.perf_counter() if started is None else started
    epochs = trainer.cfg.training.epochs
    rows = files.metrics_through(trainer.position.epoch)
    earlier = len(rows)
    while trainer.position.epoch < epochs:
        if on_epoch_start is not None:
            on_epoch_start(trainer.position.epoch + 1)
        try:
            row = trainer.run_epoch(on_batch, should_stop)
        except Interrupted:
            pos = trainer.position
            files.commit({"last.npz": ckpt_io.encode(trainer.checkpoint())}, pos.epoch, pos.batch)
            raise
        rows.append(row)
        # With no validation set, the latest network counts as the best.
        score = row.val_accuracy if row.val_accuracy is not None else row.epoch
        improved = score > trainer.best_accuracy
        if improved:
            trainer.best_accuracy = score
        # The epoch's outputs become visible together (one commit), so a crash between two writes
        # can no longer leave a missing metrics row or an older best.npz.
        state = ckpt_io.encode(trainer.checkpoint())
        blobs = {"last.npz": state, "metrics.jsonl": metrics_bytes(rows)}
        if improved:
            blobs["best.npz"] = state
        files.commit(blobs, trainer.position.epoch)
        if on_epoch_end is not None:
            on_epoch_end(row)
    test = evaluate(trainer.net, trainer.data.test)
    best = max((r for r in rows if r.val_accuracy is not None), key=lambda r: r.val_accuracy, default=None)
    return Summary(
        test_accuracy=test.accuracy,
        test_loss=test.loss,
        epochs=trainer.position.epoch,
        best_epoch=best.epoch if best else None,
        best_val_accuracy=best.val_accuracy if best else None,
        train_seconds=sum(r.seconds for r in rows[earlier:]),
        run_train_seconds=sum(r.seconds for r in rows),
        seconds=time.perf_counter() - started,
        run_dir=str(files.root),
        confusion=test.confusion,
    )
