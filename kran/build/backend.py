"""The builder's interfaces: its options, what it needs from the engine (:class:`Backend`), what a
RUN gives back, the failure of a RUN, and the build cache (key -> image ID).

Split from :mod:`kran.build.builder` (which re-exports every name) so the engine's backend and the
tests' fake implement a small module of types, not the builder itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from kran.errors import KranError


class BuildFailed(KranError):
    """A RUN step exited non-zero: docker's classic builder text, exit status 1.

    ``command_code`` is the command's own exit status (the API's ``errorDetail.code``)."""

    exit_code = 1
    from_daemon = False

    def __init__(self, message: str, command_code: int = 1) -> None:
        super().__init__(message)
        self.command_code = command_code


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    container_id: str
    exit_code: int
    image_id: str | None  # the committed image when exit_code == 0


class Backend(Protocol):
    """What the builder needs from the engine."""

    def resolve_image(self, name: str, *, pull: bool, platform: str) -> str:
        """The image ID of ``name``, pulled if missing (or always, with ``pull``)."""

    def image_config(self, image_id: str) -> dict[str, Any]:
        """The image config JSON object."""

    def image_exists(self, image_id: str) -> bool: ...

    def find_image(self, name: str) -> str | None:
        """The ID of a local image by name or ID, or None (never pulls)."""

    def new_image(self, base: str | None, layer_dir: str | None, *, config: dict[str, Any],
                  history: dict[str, Any]) -> str: ...

    def run(self, image_id: str | None, *, argv: list[str], env: list[str], workdir: str, user: str,
            network: str, config: dict[str, Any], history: dict[str, Any],
            on_start: Callable[[str], None], output: Callable[[bytes], None]) -> RunResult:
        """Run ``argv`` in a container of ``image_id``; on exit 0 commit its upper dir on top of
        ``image_id`` with ``config``/``history``; always remove the container."""

    def rootfs(self, image_id: str | None) -> AbstractContextManager[str]:
        """A read-only view of the image's root filesystem, for the duration of the ``with``."""

    def remove_image(self, image_id: str) -> None: ...

    def tag(self, image_id: str, name: str) -> None: ...

    def workdir(self) -> str:
        """A fresh private directory on the store's filesystem (the caller removes it)."""


@dataclass(kw_only=True)
class BuildOptions:
    context_dir: str
    dockerfile: str  # its text
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "host"
    platform: str = ""
    extra_hosts: list[str] = field(default_factory=list)  # "name:ip", the build containers' /etc/hosts
    #: images whose history the cache may reuse; when given, only steps leading to one of them
    #: count as cached (docker's classic builder ``--cache-from``)
    cache_from: list[str] = field(default_factory=list)
    #: False when a client already filtered the context by its .dockerignore (the API): then,
    #: like dockerd, only the .dockerignore file and the Dockerfile are dropped when it names them
    apply_dockerignore: bool = True


class Cache:
    """key -> image ID in a small JSON file (``<root>/build-cache.json``), written atomically."""

    def __init__(self, path: str, exists: Callable[[str], bool]) -> None:
        self.path = path
        self.exists = exists

    def _load(self) -> dict[str, str]:
        try:
            with open(self.path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def get(self, key: str) -> str | None:
        iid = self._load().get(key)
        return iid if iid and self.exists(iid) else None

    def put(self, key: str, image_id: str) -> None:
        data = {k: v for k, v in self._load().items() if self.exists(v)} if os.path.exists(self.path) else {}
        data[key] = image_id
        d = os.path.dirname(self.path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-cache.", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=0, sort_keys=True)
                f.flush()
                if not os.environ.get("KRAN_NOSYNC"):
                    os.fsync(f.fileno())
            os.rename(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def cache_key(parent: str | None, text: str, content: str = "") -> str:
    return hashlib.sha256(f"{parent or 'scratch'}\n{text}\n{content}".encode()).hexdigest()


def leads_to(cfg: dict[str, Any], target: dict[str, Any]) -> bool:
    """Whether image ``target`` was built on top of image ``cfg``: its layers and history start
    with ``cfg``'s (docker's test for a ``--cache-from`` source: kran keeps no parent links)."""
    def parts(c: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        return list((c.get("rootfs") or {}).get("diff_ids") or []), list(c.get("history") or [])

    (d1, h1), (d2, h2) = parts(cfg), parts(target)
    return d2[:len(d1)] == d1 and h2[:len(h1)] == h1
