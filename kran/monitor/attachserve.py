"""The monitor's attach side: ``attach.sock``, its clients' frames in (stdin, close-stdin, resize,
stop) and the container's output out, one bounded buffer per client.

A mixin of :class:`kran.monitor.monitor.Monitor`, which owns the state these methods use (the
listener, the clients, the container's stdin and pty master) and calls them from its poll loop.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import termios

from kran.monitor import proto
from kran.monitor.base import Client, Socket, accept


class AttachServing:
    listener: Socket | None
    clients: dict[int, Client]
    stdin_fd: int
    stdin_buf: bytearray
    stdin_close_pending: bool
    master: int
    stop_requested: bool

    def broadcast(self, data: bytes, force: bool = False) -> None:
        for c in self.clients.values():
            if not c.closing:
                c.queue(data, force)

    def write_stdin(self) -> None:
        if self.stdin_buf:
            try:
                n = os.write(self.stdin_fd, self.stdin_buf)
            except BlockingIOError:
                return
            except OSError:  # EPIPE: the container closed its stdin
                self.stdin_buf.clear()
                n = 0
            del self.stdin_buf[:n]
        if not self.stdin_buf and self.stdin_close_pending:
            self.stdin_close_pending = False
            if self.stdin_fd == self.master:
                # A terminal has no half-close: send the EOF character (VEOF, ^D), as a user would.
                try:
                    os.write(self.master, b"\x04")
                except OSError:
                    pass
            else:
                os.close(self.stdin_fd)
            self.stdin_fd = -1

    # -- attach --------------------------------------------------------------------------

    def await_client(self, timeout: float) -> None:
        """Block until the first attach client connects (or ``timeout`` passes)."""
        import select

        assert self.listener is not None
        r, _, _ = select.select([self.listener], [], [], timeout)
        if r:
            self.on_accept()

    def listen(self) -> None:
        try:
            os.unlink(proto.ATTACH_SOCK)
        except FileNotFoundError:
            pass
        s = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.bind(proto.ATTACH_SOCK)  # relative: cwd is CONTAINER_DIR, so no 108-byte path limit
        os.chmod(proto.ATTACH_SOCK, 0o600)
        s.listen(16)
        s.setblocking(False)
        self.listener = s

    def on_accept(self) -> None:
        assert self.listener is not None
        try:
            conn = accept(self.listener)
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.clients[conn.fileno()] = Client(conn)

    def drop_client(self, c: Client) -> None:
        del self.clients[c.sock.fileno()]
        c.sock.close()

    def on_client_readable(self, c: Client) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop_client(c)
            return
        c.inbuf += data
        while len(c.inbuf) >= proto.HEADER.size:
            kind, length = proto.HEADER.unpack_from(c.inbuf)
            if length > proto.MAX_FRAME:
                self.drop_client(c)
                return
            end = proto.HEADER.size + length
            if len(c.inbuf) < end:
                break
            payload = c.inbuf[proto.HEADER.size : end]
            c.inbuf = c.inbuf[end:]
            self.on_frame(kind, payload)

    def on_frame(self, kind: int, payload: bytes) -> None:
        if kind == proto.STDIN:
            if self.stdin_fd >= 0 and not self.stdin_close_pending:
                self.stdin_buf += payload
        elif kind == proto.CLOSE_STDIN:
            if self.stdin_fd >= 0:
                self.stdin_close_pending = True
        elif kind == proto.RESIZE:
            if self.master >= 0 and len(payload) >= 4:
                rows, cols = struct.unpack(">HH", payload[:4])
                try:
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                except OSError:
                    pass
        elif kind == proto.STOP:
            self.stop_requested = True

    def on_client_writable(self, c: Client) -> None:
        try:
            n = c.sock.send(c.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self.drop_client(c)
            return
        del c.outbuf[:n]
        if not c.outbuf and c.closing:
            self.drop_client(c)
