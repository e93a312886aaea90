"""``python -m kran.monitor CONTAINER_DIR [--sync-fd N] [--detach]``.

``client.start`` runs this file as a script with ``python -I -S`` (no site, no venv, smallest
RSS), so it puts the directory that holds the ``kran`` package on ``sys.path`` itself.
"""

import sys

if not __package__:
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from kran.monitor.monitor import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
