"""Small helpers the API tests share."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from typing import Any


def until(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``fn`` until it returns something truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def tar_of(files: dict[str, str], gz: bool = False) -> io.BytesIO:
    """A tar (gzipped with ``gz``) of text files, rewound: a build context or an archive upload."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        for name, text in files.items():
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf
