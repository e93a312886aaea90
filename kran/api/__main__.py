"""``python -m kran.api --root ROOT [--time SECONDS] [--verbose] unix:///path.sock``: the API server
(what ``kran system service`` runs)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import os
    import signal
    import threading

    from kran.errors import KranError

    if os.getuid() != 0:  # run directly by a user (kran system service has entered already)
        from kran.rootless.pause import enter

        try:
            enter()
        except KranError as e:
            sys.stderr.write(f"kran: {e}\n")
            return 125
    from kran.api.server import make_server
    from kran.rootless import default_socket

    root, seconds, verbose, uri = "", 0.0, False, "unix://" + default_socket()
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--root" and args:
            root = args.pop(0)
        elif a == "--time" and args:
            seconds = float(args.pop(0))
        elif a == "--verbose":
            verbose = True
        elif a.startswith("unix://"):
            uri = a
        else:
            sys.stderr.write(f"usage: python -m kran.api --root ROOT [--time S] [--verbose] [unix://PATH]: {a}\n")
            return 2
    if not root:
        from kran.engine import default_root

        root = default_root()
    path = uri[len("unix://"):]
    # SIGTERM/SIGINT to this PID (the one `kran system service` had: it execs this module) stops
    # the server.  Installed before the socket exists, so a signal during startup is not lost.
    stop_asked = threading.Event()
    srv = None

    def stop(*_: object) -> None:
        stop_asked.set()
        if srv is not None:  # shutdown() waits for serve_forever: not from its own thread
            threading.Thread(target=srv.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv = make_server(path, root, verbose=verbose)
    except (KranError, OSError) as e:
        sys.stderr.write(f"kran: {e}\n")
        return 125
    if stop_asked.is_set():
        srv.close()
        return 0
    if seconds:
        t = threading.Timer(seconds, stop)
        t.daemon = True
        t.start()
    sys.stderr.write(f"kran: API listening on {uri}\n")
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.5)
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
