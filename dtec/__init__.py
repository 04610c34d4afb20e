"""dtec: the digital-twin engine compiler."""

__version__ = "0.1.0"
