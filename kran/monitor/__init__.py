"""Per-container supervisor: stdio/pty, logs, exit status, restart policy (issue 3)."""
