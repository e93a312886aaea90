"""Dockerfile parser and builder (issue 7)."""
