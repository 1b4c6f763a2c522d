"""pyxl: a Python clone of Xen's xl toolstack on a simulated Xen host."""

__version__ = "0.1.0"
