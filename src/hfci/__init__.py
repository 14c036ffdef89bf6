"""hfci: every transformers architecture, tiny and offline, on every device, as a CI matrix."""

__version__ = "0.1.0"
