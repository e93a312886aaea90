"""What the monitor and its clients share: file names, attach frames, log rotation names.

Imported by the monitor process itself, so it imports nothing but ``struct``.
"""

from __future__ import annotations

import struct

# Files in CONTAINER_DIR.
CONFIG = "monitor.json"
STATE = "state.json"
ATTACH_SOCK = "attach.sock"
STOP_FILE = "stop-requested"
CLI_REMOVES = "cli-removes"  # an attached `run --rm` will remove the container itself
CONSOLE_SOCK = "console.sock"  # only while the runtime's `create` runs with a terminal
PID_FILE = "init.pid"

# Attach frames: [type:1][length:4, big-endian][payload], both ways.
HEADER = struct.Struct(">BI")
# client -> monitor
STDIN = 0
CLOSE_STDIN = 1
RESIZE = 2  # payload: rows u16, cols u16 (big-endian)
STOP = 3  # "stop requested": the restart policy must not restart
# monitor -> client
STDOUT = 1
STDERR = 2
EXIT = 3  # payload: decimal exit code

MAX_FRAME = 1 << 20  # larger frames are a protocol error

# docker's json-file log driver splits lines longer than its 16 KiB copy buffer.
MAX_LOG_LINE = 16 * 1024

# Docker's zero time (time.Time{}), for "finished_at" before the first exit.
ZERO_TIME = "0001-01-01T00:00:00Z"


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def rotated(path: str, n: int) -> str:
    """The n-th rotated log file: ``log``, ``log.1``, ``log.2``... (docker's json-file names)."""
    return path if n == 0 else f"{path}.{n}"


def exit_code_for(message: str) -> int:
    """Docker's exit code for a runtime that could not start the process.

    Message text is all an OCI runtime gives us (runc prints ``exec: "x": executable file not
    found in $PATH``); docker decides the same way (daemon/start.go), but only for the process's
    executable here, so that e.g. a missing rootfs stays a plain engine failure.
    """
    if "executable file not found" in message:
        return 127
    if 'exec: "' in message or "exec:" in message:
        if "no such file or directory" in message:
            return 127
        if "permission denied" in message:
            return 126
    return 125
