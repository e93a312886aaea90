"""Images: references, OCI/Docker structures, the image store and archive formats."""
