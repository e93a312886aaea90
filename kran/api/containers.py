"""Container endpoints."""
