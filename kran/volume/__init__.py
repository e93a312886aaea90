"""Named volumes and bind mounts (issue 6)."""
