"""kran's OCI runtime: a bundle (config.json + rootfs) -> an isolated process.

``kran-runtime`` (``kran.runtime.cli``) speaks runc's command line so the engine, containerd and
tests can swap it with runc.  Modules load lazily per command; see docs/runtime.md.
"""
