"""bench: a declarative benchmark suite for deep-learning optimizers."""

__version__ = "0.1.0"
