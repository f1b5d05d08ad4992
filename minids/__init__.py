"""minids: an autograd-free NumPy/CuPy framework for double-sparsity Network-in-Network."""

__version__ = "0.1.0"
