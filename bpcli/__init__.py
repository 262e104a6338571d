"""bpcli: train, verify and explain backpropagation in fully-connected networks."""

__version__ = "0.1.0"
