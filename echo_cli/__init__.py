"""echo-cli: batch rendering of ECHO interactive talking/listening heads."""

__version__ = "0.1.0"
