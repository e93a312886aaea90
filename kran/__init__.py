"""kran: a container engine for Linux with Docker's user interface."""

__version__ = "0.1.0"
# The Docker Engine API versions the server (kran.api) speaks, here at the root so the CLI's
# `kran version` can say the same without importing the API package (the layers keep them apart).
API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
