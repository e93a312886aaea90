"""Thin wrappers over the kernel (ctypes).  One small module per concern; no policy here.

Every function raises ``OSError`` (with errno) on failure.  Importing these modules starts no
threads, so they are safe to use in a process that is about to ``unshare``/``setns``.
"""
