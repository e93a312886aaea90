"""``python -m kran.engine.afterexit ROOT ID``: run by a container's monitor when the container has
ended for good, so what it held on the host (published ports' DNAT entries, its veth and address
lease, the rootfs mount) is released at once rather than the next time kran looks at it."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m kran.engine.afterexit ROOT CONTAINER_ID\n")
        return 2
    from kran.engine import Engine
    from kran.engine.containers import ContainerNotFound, get
    from kran.errors import KranError

    try:
        get(Engine(argv[0]), argv[1])  # seeing it exited runs the cleanup
    except (ContainerNotFound, KranError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
