"""OCI distribution client: pull, push, auth, mirrors (issue 4)."""
