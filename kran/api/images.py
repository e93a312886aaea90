"""Image endpoints."""
