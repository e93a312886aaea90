"""``python -m kran.runtime`` or ``python -I -S .../kran/runtime/__main__.py`` (how the engine runs it:
no site-packages to scan, so it starts faster; the directory holding ``kran`` goes on ``sys.path``)."""

import sys

if not __package__:
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from kran.runtime.cli import main  # noqa: E402

raise SystemExit(main())
