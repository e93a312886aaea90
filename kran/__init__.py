"""kran: a container engine for Linux with Docker's user interface."""

__version__ = "0.1.0"
