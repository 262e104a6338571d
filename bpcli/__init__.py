"""bpcli: train, verify and explain backpropagation in fully-connected networks."""

from bpcli import threads as _threads  # noqa: F401 - opens the start-up window "auto" threads measure

__version__ = "0.1.0"

__all__ = ["__version__", "check_gradients"]


def __getattr__(name: str) -> object:
    # Imported on first use: `bpcli` itself (and so the CLI's start-up) must not pay for NumPy and the
    # checker just to read the version.
    if name == "check_gradients":
        from bpcli.gradcheck.api import check_gradients

        return check_gradients
    raise AttributeError(f"module 'bpcli' has no attribute {name!r}")
