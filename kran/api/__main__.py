"""``python -m kran.api --root ROOT [--time SECONDS] [--verbose] unix:///path.sock``: the API server
(what ``kran system service`` runs)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import signal
    import threading

    from kran.api.server import DEFAULT_SOCKET, make_server
    from kran.errors import KranError

    root, seconds, verbose, uri = "", 0.0, False, "unix://" + DEFAULT_SOCKET
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
    try:
        srv = make_server(path, root, verbose=verbose)
    except (KranError, OSError) as e:
        sys.stderr.write(f"kran: {e}\n")
        return 125

    def stop(*_: object) -> None:
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if seconds:
        t = threading.Timer(seconds, stop)
        t.daemon = True
        t.start()
    sys.stderr.write(f"kran: API listening on {uri}\n")
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.5)
    finally:
        srv.server_close()
        try:
            import os

            os.unlink(path)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
