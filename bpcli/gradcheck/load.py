"""What `bpcli gradcheck` checks on: the network (a config's initialization or a checkpoint), the size
of the batch and the batch itself (MNIST test images or seeded random data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bpcli import checkpoint as checkpoint_module
from bpcli import config as config_module
from bpcli import resources
from bpcli.activations import Array
from bpcli.config import Config
from bpcli.data import load_mnist, one_hot
from bpcli.errors import UsageError
from bpcli.network import Network


def load_subject(
    config_path: str | Path | None, overrides: list[str], checkpoint: str | Path | None, seed: int | None
) -> tuple[Config, Network, int, str]:
    """The config, the network to check, the seed and a phrase saying where the network came from.

    Without a checkpoint: the config's initialization, seeded by `seed` (default training.seed), in
    training.dtype: the very parameters training would start from. With one: its trained parameters,
    and for the rest (data.path, training.*) CONFIG if given, else the stored config; `--set` may
    change anything but the model, which the stored parameters fix.
    """
    if seed is not None and seed < 0:
        # NumPy seeds are non-negative; say so here rather than let default_rng raise a ValueError.
        raise UsageError(f"--seed {seed}: must be a whole number >= 0")
    if checkpoint is None:
        if config_path is None:
            raise UsageError("gradcheck needs a CONFIG file or --checkpoint CKPT")
        cfg = config_module.load(config_path, overrides)
        seed = cfg.training.seed if seed is None else seed
        resources.check_network(cfg.model.layers, "float64")  # before NumPy sees a size like 10^12
        net = Network.from_config(cfg.model, seed, cfg.training.dtype)
        return cfg, net, seed, f"network {list(net.sizes)} initialized from {config_path} ({cfg.model.init}, seed {seed})"
    ckpt = checkpoint_module.load(checkpoint)
    if config_path is not None:
        cfg = config_module.load(config_path, overrides)
    else:
        cfg = config_module.loads(ckpt.config.to_yaml(), source=f"{checkpoint} (stored config)",
                                  overrides=overrides, name=ckpt.config.name)
    if cfg.model != ckpt.config.model:
        raise UsageError(f"{checkpoint} holds a different model than the config describes "
                         f"(layers {list(ckpt.config.model.layers)}, {ckpt.config.model.activation}); "
                         "model.* cannot change with --checkpoint")
    seed = cfg.training.seed if seed is None else seed
    return cfg, ckpt.network, seed, f"network from checkpoint {checkpoint} (epoch {ckpt.epoch})"


def default_batch(sizes: tuple[int, ...], batch_size: int | None = None) -> tuple[int, str]:
    """The batch size m to check on when none is given, and why: the smallest prime above 2 that is
    no layer width n_l and not the training batch size.

    A bug that divides by n_L instead of m, reads an (m, n_l) array as (n_l, m), or uses the
    workspace's full row count for a cut batch computes the right numbers whenever those sizes happen
    to be equal (the old default, 10 examples on 10 classes, let the first pass). A prime shares no
    factor with the other sizes, and a small one keeps the check fast.
    """
    taken = set(sizes) | ({batch_size} if batch_size else set())
    m = 3
    while m in taken or any(m % p == 0 for p in range(3, int(m**0.5) + 1, 2)):
        m += 2
    widths = ", ".join(str(n) for n in sizes)
    against = f" and not training.batch_size ({batch_size})" if batch_size else ""
    return m, (f"batch of {m}: the smallest prime above 2 that is no layer width ({widths}){against}, so that "
               f"a 1/n_l in place of 1/m or an (m, n_l) array read as (n_l, m) cannot pass by a coincidence of sizes")


def batch_for(
    sizes: tuple[int, ...], output: str, m: int, seed: int, mnist_dir: str | Path | None
) -> tuple[Array, Array, str]:
    """A batch to check on: x (m, n_1), y (m, n_L) in float64, and a description of it.

    With `mnist_dir`, the first m images of the MNIST test set (pixels in [0, 1], one-hot digits);
    without, seeded random x in [0, 1) and targets that suit the output layer: one-hot for softmax,
    values in (0, 1) for sigmoid, standard normal for identity.
    """
    n_in, n_out = sizes[0], sizes[-1]
    if m < 1:
        raise UsageError(f"--batch {m}: must be at least 1")
    # Before any array of m rows exists: --batch 100000000 is refused in one line, not a MemoryError.
    resources.check_gradcheck(sizes, m)
    if mnist_dir is None:
        rng = np.random.default_rng(seed)
        x = rng.random((m, n_in))
        if output == "softmax":
            y = one_hot(rng.integers(0, n_out, m), n_out, np.float64)
        elif output == "sigmoid":
            y = rng.uniform(0.05, 0.95, (m, n_out))
        else:
            y = rng.standard_normal((m, n_out))
        return x, y, f"{m} random example{'s' * (m != 1)} (seed {seed})"
    # validation_size and limit of 1 keep the loader from converting the 60,000 training images.
    ds = load_mnist(mnist_dir, validation_size=1, limit=1, dtype="float64")
    test = ds.test
    if m > len(test):
        raise UsageError(f"--batch {m}: the test set of {mnist_dir} has only {len(test):,} examples")
    if test.x.shape[1] != n_in or test.y.shape[1] != n_out:
        raise UsageError(
            f"{mnist_dir} has inputs of {test.x.shape[1]} pixels and {test.y.shape[1]} classes, but the network's "
            f"layers are {list(sizes)}; use --random-data, or layers [{test.x.shape[1]}, ..., {test.y.shape[1]}]"
        )
    return test.x[:m], test.y[:m], f"the first {m} MNIST test example{'s' * (m != 1)} ({mnist_dir})"
