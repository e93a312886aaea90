"""Docker Engine API server on a unix socket (issue: API)."""
