"""Layer tars: the one path-safety helper between OCI layer tarballs and the disk.

``apply_layer`` unpacks an uncompressed layer tar into a directory; ``write_layer`` turns a
directory (an overlay upper dir or a layer diff) back into a layer tar; ``open_decompressed``
sniffs and undoes gzip/zstd.  They hold kran's one whiteout converter between the OCI form
(image-spec layer.md "Whiteouts": ``DIR/.wh.NAME`` hides NAME, ``DIR/.wh..wh..opq`` hides all of
DIR's lower contents) and the overlayfs form (kernel Documentation/filesystems/overlayfs.rst: a
whiteout is a char device 0/0, an opaque dir has xattr ``trusted.overlay.opaque=y``).

TRUST BOUNDARY: tar bytes come from outside (a registry, ``docker load``, a build context).
``apply_layer`` never lets a name, a symlink or a hardlink take a write outside ``root``:

* names are split into components; absolute names and any ``..`` component are refused;
* parents are opened component by component from an fd on ``root`` with ``O_NOFOLLOW``; a
  symlink met on the way is resolved *inside* the root (an absolute target restarts at the root,
  as ``openat2(RESOLVE_IN_ROOT)`` does; a ``..`` above the root is refused), so an entry
  ``a -> /etc`` followed by ``a/passwd`` writes ``ROOT/etc/passwd``;
* the last component is created with ``*at()`` calls that do not follow it; symlink targets are
  stored verbatim and never resolved when created;
* Python's ``tarfile`` extraction (and its filters) is not used: it is no security boundary
  (CVE-2007-4559, CVE-2025-4517).  The tar headers are parsed here, strictly: a bad checksum, a
  truncated stream or a malformed PAX record is an error, where ``tarfile`` would stop quietly.

Not handled (refused): GNU sparse files, multi-volume archives, unknown entry types.
xattrs in the ``trusted.overlay.`` / ``user.overlay.`` namespaces belong to overlayfs and are
never taken from a tar nor written to one (whiteouts and opaque dirs have their own form).
"""

from __future__ import annotations

import base64
import errno
import io
import os
import shutil
import stat
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from kran.errors import InvalidArgument, InvalidContent, KranError, UnsafePath

__all__ = ["LayerStats", "apply_layer", "compression_of", "open_decompressed", "write_layer"]

_CHUNK = 1 << 20
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_META = 1 << 20  # cap on a PAX header or GNU long name (Go's archive/tar uses the same)
_MAX_HOPS = 40  # symlinks followed while resolving one path (the kernel's MAXSYMLINKS)
_DIR_CACHE = 64  # open parent-dir fds kept between entries

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_AUFS_META = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
_ACL_DEFAULT = "system.posix_acl_default"
_PRIVATE_XATTRS = ("trusted.overlay.", "user.overlay.")
_FORMATS = ("overlay", "none")

# tar type flags (POSIX.1-2001 ustar + pax, GNU extensions)
_REG, _AREG, _CONT = b"0", b"\0", b"7"
_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK = b"x", b"g", b"L", b"K"
_HEADER_ONLY = frozenset((_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO))  # their size field means nothing


# -- compression ------------------------------------------------------------------------------


def compression_of(first_bytes: bytes) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"`` from the first (up to four) bytes of a blob."""
    if first_bytes[:2] == b"\x1f\x8b":
        return "gzip"
    if first_bytes[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def open_decompressed(fileobj: BinaryIO) -> BinaryIO:
    """Sniff gzip, zstd or plain tar and return a readable stream of the uncompressed bytes.

    Needs only ``fileobj.read``: the sniffed bytes are kept and replayed, nothing is seeked.
    A corrupt or truncated compressed stream raises ``InvalidContent`` while being read.
    ``fileobj`` is not closed by closing the result.
    """
    head = b""
    while len(head) < 4:
        more = fileobj.read(4 - len(head))
        if not more:
            break
        head += more
    raw: io.RawIOBase = _Prefixed(head, fileobj)
    kind = compression_of(head)
    if kind == "gzip":
        raw = _GzipRaw(raw)
    elif kind == "zstd":
        raw = _ZstdRaw(raw)
    return io.BufferedReader(raw, _CHUNK)



def name_of(m: _Member) -> str:
    return m.name.decode("utf-8", "surrogateescape")


def _chown(fn, entry: str, m: _Member, *args, **kw) -> None:  # type: ignore[no-untyped-def]
    """fchown/lchown to the member's owner.  In a rootless user namespace an owner outside the
    mapping is EINVAL: skipped in single-id mode (the file stays the user's, Podman's
    ignore_chown_errors), otherwise a clear error (Podman's wording)."""
    try:
        fn(*args, m.uid, m.gid, **kw)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        from kran import rootless

        if not rootless.active():
            raise
        if rootless.single_id():
            return
        raise KranError(f"potentially insufficient UIDs or GIDs available in user namespace (requested "
                        f"{m.uid}:{m.gid} for /{entry.lstrip('./')}): check /etc/subuid and /etc/subgid: "
                        f"lchown /{entry.lstrip('./')}: invalid argument") from None

class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``src``), then the rest of ``src``."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        self._head = head
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(b))
        if not data:
            return 0
        b[: len(data)] = data
        return len(data)


class _GzipRaw(io.RawIOBase):
    """gzip (RFC 1952) decoder: multi-member, output bounded by each read's buffer.

    zlib checks each member's CRC-32 and length; a stream cut short raises InvalidContent.
    NUL padding after the last member is accepted, as ``gzip -d`` and ``GzipFile`` do.
    """

    def __init__(self, src: io.RawIOBase) -> None:
        self._src = src
        self._d: zlib._Decompress | None = zlib.decompressobj(31)
        self._pending = b""  # compressed input not yet given to zlib
        self._out = b""  # decompressed output not yet returned

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._src.read(_CHUNK) or b""

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if not self._out:
            try:
                self._out = self._decode(len(b))
            except zlib.error as e:
                raise InvalidContent(f"invalid gzip stream: {e}") from e
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decode(self, limit: int) -> bytes:
        while True:
            if self._d is None:  # between members: NUL padding, another member, or the end
                data = self._more()
                if not data:
                    return b""
                self._pending = data.lstrip(b"\0")
                if self._pending:
                    self._d = zlib.decompressobj(31)
                continue
            d = self._d
            data = self._more()
            if data:
                out = d.decompress(data, limit)
                self._pending = d.unused_data if d.eof else d.unconsumed_tail
            else:
                out = d.flush()  # the input has ended: what zlib still holds, if anything
                if not d.eof:
                    raise InvalidContent("invalid gzip stream: unexpected end of data")
                self._pending = d.unused_data
            if d.eof:
                self._d = None
            if out:
                return out


class _ZstdFrames:
    """Follows zstd frame boundaries (RFC 8878 section 3.1) in the compressed bytes.

    zstandard's stream_reader returns b"" where a stream is cut short; this tells a complete
    stream (ends between frames) from a truncated one.  It reads headers only: per 128 KiB block
    a few Python operations.
    """

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._hdr = b""
        self._skip = 0
        self._checksum = False

    @property
    def complete(self) -> bool:
        return self._state == "magic" and not self._hdr and not self._skip

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                continue
            take = min(self._need - len(self._hdr), n - pos)
            self._hdr += data[pos : pos + take]
            pos += take
            if len(self._hdr) == self._need:
                h, self._hdr = self._hdr, b""
                self._step(h)

    def _step(self, h: bytes) -> None:
        v = int.from_bytes(h, "little")
        if self._state == "magic":
            if v == 0xFD2FB528:
                self._state, self._need = "descriptor", 1
            elif v & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
                self._state, self._need = "skipsize", 4
            else:
                raise InvalidContent("invalid zstd stream: bad frame magic")
        elif self._state == "skipsize":
            self._skip = v
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            single = (v >> 5) & 1
            self._checksum = bool(v & 4)
            fcs = (single, 2, 4, 8)[v >> 6]
            self._skip = (1 - single) + (0, 1, 2, 4)[v & 3] + fcs
            self._state, self._need = "block", 3
        else:  # block header: last-block bit, type, size
            btype = (v >> 1) & 3
            if btype == 3:
                raise InvalidContent("invalid zstd stream: reserved block type")
            self._skip = 1 if btype == 1 else v >> 3  # an RLE block stores one byte
            if v & 1:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4


class _Tee:
    def __init__(self, src: io.RawIOBase, frames: _ZstdFrames) -> None:
        self._src = src
        self.frames = frames

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n if n > 0 else _CHUNK) or b""
        self.frames.feed(data)
        return data


class _ZstdRaw(io.RawIOBase):
    def __init__(self, src: io.RawIOBase) -> None:
        import zstandard  # lazily: only zstd layers need it

        self._error = zstandard.ZstdError
        self._tee = _Tee(src, _ZstdFrames())
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self._tee, read_size=_CHUNK, read_across_frames=True, closefd=False
        )
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        try:
            n = self._reader.readinto(b)
        except self._error as e:
            raise InvalidContent(f"invalid zstd stream: {e}") from e
        if n == 0:
            while self._tee.read(_CHUNK):
                pass
            if not self._tee.frames.complete:
                raise InvalidContent("invalid zstd stream: unexpected end of data")
            self._done = True
        return n


# -- tar reading ------------------------------------------------------------------------------


class _Reader:
    """Big reads from the (non-seekable) source, served in small pieces; counts the offset."""

    __slots__ = ("_raw", "_buf", "_mv", "_pos", "offset")

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._buf = b""
        self._mv = memoryview(self._buf)
        self._pos = 0
        self.offset = 0

    def _set(self, buf: bytes, pos: int) -> None:
        self._buf = buf
        self._mv = memoryview(buf)
        self._pos = pos

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        pos = self._pos
        if len(self._buf) - pos < n:  # gather pieces, join once (sources may return little)
            parts = [self._buf[pos:]]
            have = len(parts[0])
            while have < n:
                data = self._raw.read(max(_CHUNK, n - have))
                if not data:
                    break
                parts.append(data)
                have += len(data)
            self._set(b"".join(parts), 0)
            pos = 0
        b = self._buf[pos : pos + n]
        self._pos = pos + len(b)
        self.offset += len(b)
        return b

    def copy_to(self, fd: int | None, n: int) -> None:
        """Write the next ``n`` bytes to ``fd`` (or drop them if None)."""
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                data = self._raw.read(_CHUNK)
                if not data:
                    raise InvalidContent("invalid layer tar: unexpected end of data")
                self._set(bytes(data), 0)
                continue
            take = min(avail, n)
            if fd is not None:
                mv = self._mv[self._pos : self._pos + take]
                while mv:
                    mv = mv[os.write(fd, mv) :]
            self._pos += take
            self.offset += take
            n -= take

    def skip(self, n: int) -> None:
        if n <= len(self._buf) - self._pos:
            self._pos += n
            self.offset += n
        else:
            self.copy_to(None, n)

    def drain(self) -> None:
        self.offset += len(self._buf) - self._pos
        self._set(b"", 0)
        while data := self._raw.read(_CHUNK):
            self.offset += len(data)


class _Member:
    __slots__ = (
        "name",
        "linkname",
        "type",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime_ns",
        "atime_ns",
        "major",
        "minor",
        "xattrs",
    )

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] = {}
        self.atime_ns: int | None = None


# name mode uid gid size mtime chksum typeflag linkname magic(6) | version uname gname devmajor
# devminor (read only for devices) | prefix (POSIX ustar only; GNU keeps atime/ctime there)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s82x155s12x")
_OCTAL_CHARS = b"01234567 \0"


def _bad(what: str) -> InvalidContent:
    return InvalidContent(f"invalid layer tar: {what}")


def _nts(field: bytes) -> bytes:
    i = field.find(0)
    return field if i < 0 else field[:i]


def _num(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        inv = 0xFF if field[0] & 0x40 else 0
        v = 0
        for i, c in enumerate(field):
            c ^= inv
            v = (v << 8) | (c & 0x7F if i == 0 else c)
        return ~v if inv else v
    s = _nts(field).strip(b" ")
    if not s:
        return 0
    if s.translate(None, b"01234567"):
        raise _bad(f"bad numeric field {bytes(field)!r}")
    return int(s, 8)


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``"%d %s=%s\\n"`` records (POSIX.1-2001 pax, "extended header")."""
    out: dict[str, bytes] = {}
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] == 0:  # some writers pad with NULs
            break
        sp = data.find(b" ", pos, pos + 21)
        if sp < 0 or not data[pos:sp].isdigit():
            raise _bad("malformed PAX record")
        length = int(data[pos:sp])
        end = pos + length
        if end > n or end <= sp + 1 or data[end - 1] != 0x0A:
            raise _bad("malformed PAX record")
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise _bad("malformed PAX record")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out


def _pax_time(v: bytes) -> int:
    s = v.decode("ascii", "replace")
    neg = s.startswith("-")
    whole, _, frac = s.lstrip("-").partition(".")
    if not (whole or frac) or not (whole + frac).isdigit() or not s.isascii():
        raise _bad(f"bad PAX time {s!r}")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _pax_int(v: bytes) -> int:
    if not v.isdigit():
        raise _bad(f"bad PAX number {v!r}")
    return int(v)


def _apply_pax(m: _Member, pax: dict[str, bytes]) -> None:
    for key, v in pax.items():
        if not v:  # an empty value unsets the record
            continue
        if key == "path":
            m.name = v
        elif key == "linkpath":
            m.linkname = v
        elif key == "size":
            m.size = _pax_int(v)
        elif key == "uid":
            m.uid = _pax_int(v)
        elif key == "gid":
            m.gid = _pax_int(v)
        elif key == "mtime":
            m.mtime_ns = _pax_time(v)
        elif key == "atime":
            m.atime_ns = _pax_time(v)
        elif key.startswith("SCHILY.xattr."):
            m.xattrs[key[13:]] = v
        elif key.startswith("LIBARCHIVE.xattr."):
            name = os.fsdecode(unquote_to_bytes(key[17:]))
            try:
                value = base64.b64decode(v + b"=" * (-len(v) % 4), validate=True)
            except ValueError as e:
                raise _bad(f"bad base64 in PAX record {key}") from e
            m.xattrs.setdefault(name, value)
        elif key.startswith("GNU.sparse."):
            raise _bad("GNU sparse files are not supported")


def _members(r: _Reader) -> Iterator[_Member]:
    """The entries of a tar stream.  After each yield the entry's data is skipped (whatever the
    consumer did not read), with its padding."""
    pax: dict[str, bytes] = {}
    longname: bytes | None = None
    longlink: bytes | None = None
    while True:
        blk = r.read(_BLOCK)
        if not blk:
            if pax or longname is not None or longlink is not None:
                raise _bad("unexpected end of data after an extended header")
            return  # no end-of-archive marker; accepted as tarfile and Go's archive/tar do
        if len(blk) < _BLOCK:
            raise _bad("unexpected end of data in a header")
        if blk == _ZERO_BLOCK:
            nxt = r.read(_BLOCK)
            if nxt.strip(b"\0"):
                raise _bad("a zero block followed by data")
            if pax or longname is not None or longlink is not None:
                raise _bad("end of archive after an extended header")
            return
        (name, f_mode, f_uid, f_gid, f_size, f_mtime, f_chk, typ, link, magic, prefix) = _HEADER.unpack(blk)
        if blk[100:156].translate(None, _OCTAL_CHARS):  # base-256 or junk: the careful way
            mode, uid, gid, size, mtime, stored = map(_num, (f_mode, f_uid, f_gid, f_size, f_mtime, f_chk))
        else:
            try:
                mode = int(f_mode.strip(b" \0") or b"0", 8)
                uid = int(f_uid.strip(b" \0") or b"0", 8)
                gid = int(f_gid.strip(b" \0") or b"0", 8)
                size = int(f_size.strip(b" \0") or b"0", 8)
                mtime = int(f_mtime.strip(b" \0") or b"0", 8)
                stored = int(f_chk.strip(b" \0") or b"0", 8)
            except ValueError:  # e.g. "12 34"
                raise _bad(f"bad numeric field at offset {r.offset - _BLOCK}") from None
        # the checksum field counts as 8 spaces; some old writers summed signed chars
        unsigned = sum(blk) - sum(f_chk) + 256
        if stored != unsigned and stored != unsigned - 256 * sum(1 for c in blk[:148] + blk[156:] if c > 127):
            raise _bad(f"header checksum mismatch at offset {r.offset - _BLOCK}")
        if size < 0:
            raise _bad("negative size")
        if typ in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
            if typ == _PAX_GLOBAL:  # ignored, as Docker and containerd do
                r.skip(size + (-size % _BLOCK))
                continue
            if size > _MAX_META:
                raise _bad("extended header too large")
            data = r.read(size)
            if len(data) < size:
                raise _bad("unexpected end of data in an extended header")
            r.skip(-size % _BLOCK)
            if typ == _PAX:
                pax.update(_pax_records(data))
            elif typ == _GNU_LONGNAME:
                longname = _nts(data)
            else:
                longlink = _nts(data)
            continue

        m = _Member()
        name = _nts(name)
        if magic == b"ustar\0":  # POSIX ustar: name = prefix/name
            prefix = _nts(prefix)
            if prefix:
                name = prefix + b"/" + name
        m.name = name
        m.linkname = _nts(link)
        m.mode = mode & 0o7777
        m.uid = uid
        m.gid = gid
        m.mtime_ns = mtime * 1_000_000_000
        m.size = size
        m.major = m.minor = 0
        if typ in (_CHR, _BLK):
            m.major = _num(blk[329:337])
            m.minor = _num(blk[337:345])
        if longname is not None:
            m.name = longname
        if longlink is not None:
            m.linkname = longlink
        if pax:
            _apply_pax(m, pax)
        pax, longname, longlink = {}, None, None
        if typ == _AREG and m.name.endswith(b"/"):  # pre-POSIX directory
            typ = _DIR
        elif typ in (_AREG, _CONT):
            typ = _REG
        if typ not in _HEADER_ONLY and typ != _REG:
            raise _bad(f"unsupported entry type {typ!r}: {os.fsdecode(m.name)}")
        if typ in _HEADER_ONLY:
            m.size = 0
        if not (0 <= m.uid < 0xFFFFFFFF and 0 <= m.gid < 0xFFFFFFFF):  # (uid_t)-1 means "unchanged"
            raise _bad(f"owner out of range: {os.fsdecode(m.name)}")
        if not (-(2**63) < m.mtime_ns < 2**63 and (m.atime_ns is None or -(2**63) < m.atime_ns < 2**63)):
            raise _bad(f"time out of range: {os.fsdecode(m.name)}")
        m.type = typ
        end = r.offset + m.size + (-m.size % _BLOCK)
        yield m
        r.skip(end - r.offset)


# -- apply ------------------------------------------------------------------------------------


@dataclass
class LayerStats:
    entries: int = 0
    bytes: int = 0  # regular file payload bytes


def _components(name: str, entry: str) -> tuple[str, ...]:
    """A tar path as components inside the root; refuses absolute paths and any ``..``."""
    if "\0" in name:
        raise InvalidContent(f"invalid layer tar: NUL in path {entry!r}")
    if name.startswith("/"):
        raise UnsafePath(f"layer entry {entry!r}: absolute path")
    comps = name.split("/")
    if "" in comps or "." in comps:
        comps = [c for c in comps if c and c != "."]
    if ".." in comps:
        raise UnsafePath(f"layer entry {entry!r}: path climbs out with '..'")
    return tuple(comps)


def _current_umask() -> int | None:
    """The process umask, read without changing it (Linux >= 4.7), or None."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_format(whiteout_format: str) -> bool:
    if whiteout_format not in _FORMATS:
        raise InvalidArgument(f"unknown whiteout format {whiteout_format!r} (want one of {_FORMATS})")
    return whiteout_format == "overlay"


def apply_layer(
    stream: BinaryIO, root: str | os.PathLike[str], *, whiteout_format: str = "overlay"
) -> LayerStats:
    """Unpack one OCI image layer (an UNCOMPRESSED tar stream) into the existing directory ``root``.

    Reads ``stream`` to EOF, padding after the end-of-archive marker included (the caller hashes
    it for the diff ID).  ``whiteout_format="overlay"`` turns whiteouts into overlayfs form;
    ``"none"`` applies them by deleting (to flatten layers into one rootfs).  Raises
    ``UnsafePath`` for names that would leave ``root`` and ``InvalidContent`` for malformed
    tars; on error ``root`` is left half-written (the caller unpacks into a fresh directory).
    """
    overlay = _check_format(whiteout_format)
    reader = _Reader(stream)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        u = _Unpacker(root_fd, reader, overlay)
        try:
            stats = u.run(_members(reader))
        finally:
            u.close()
    finally:
        os.close(root_fd)
    reader.drain()
    return stats


class _Unpacker:
    """One apply_layer run.  Paths are tuples of components relative to the root; a *physical*
    path contains only real directories (symlinks resolved)."""

    def __init__(self, root_fd: int, reader: _Reader, overlay: bool) -> None:
        self.root = root_fd
        self.reader = reader
        self.overlay = overlay
        # lexical dir path -> (fd, physical path).  Replacing a dir or symlink clears it; the
        # fds are closed before the next entry (the current one may still be using them).
        self.dirs: OrderedDict[tuple[str, ...], tuple[int, tuple[str, ...]]] = OrderedDict()
        self.dead: list[int] = []
        self.seen: set[tuple[str, ...]] = set()
        self.created: set[tuple[str, ...]] = set()  # physical paths this layer made
        self.dir_times: dict[tuple[str, ...], tuple[int, int]] = {}
        # For _file's fast path, taken only in an empty root, where every directory is the
        # root or one this run made.  New files get (euid, egid), or the gid of a setgid parent
        # (sgid_dirs); their mode is the one asked for minus the umask, unless a default ACL
        # decides (then, or when the umask is unknown, umask is None and the mode path is off).
        self.ids: tuple[int, int] | None = None
        self.sgid_dirs: set[tuple[str, ...]] = set()
        self.umask: int | None = None
        if not os.listdir(root_fd):
            self.ids = (os.geteuid(), os.getegid())
            if os.fstat(root_fd).st_mode & stat.S_ISGID:
                self.sgid_dirs.add(())
            if _ACL_DEFAULT not in _read_xattrs(root_fd):
                self.umask = _current_umask()

    def close(self) -> None:
        self.dead.extend(fd for fd, _ in self.dirs.values())
        self.dirs.clear()
        self._reap()

    def _reap(self) -> None:
        while self.dead:
            os.close(self.dead.pop())
        while len(self.dirs) > _DIR_CACHE:
            os.close(self.dirs.popitem(last=False)[1][0])

    def run(self, members: Iterator[_Member]) -> LayerStats:
        stats = LayerStats()
        for m in members:
            stats.entries += 1
            self._reap()
            name = m.name.decode("utf-8", "surrogateescape")  # = os.fsdecode on Linux
            comps = _components(name, name)
            if not comps:
                self._root_entry(m, name)
                continue
            if comps in self.seen:
                raise InvalidContent(f"duplicate entry in layer: {'/'.join(comps)}")
            self.seen.add(comps)
            leaf = comps[-1]
            pfd, pphys = self._dir(comps[:-1], name)
            if leaf.startswith(WHITEOUT_PREFIX):
                self._whiteout(pfd, pphys, leaf, m, name)
                continue
            phys = pphys + (leaf,)
            t = m.type
            if t == _REG:
                self._file(pfd, leaf, phys, m)
                stats.bytes += m.size
            elif t == _DIR:
                self._mkdir(pfd, leaf, phys, comps, m)
            elif t == _SYM:
                self._symlink(pfd, leaf, phys, m, name)
            elif t == _LNK:
                self._hardlink(pfd, leaf, phys, m, name)
            else:
                self._node(pfd, leaf, phys, m, name)
            self.created.add(phys)
        self._set_dir_times()
        return stats

    # -- resolving inside the root

    def _dir(
        self, comps: tuple[str, ...], entry: str, missing: str | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """The directory at lexical path ``comps`` (an fd the cache owns, and its physical path).

        Missing directories are created 0755 root:root, or raise InvalidContent(``missing``).
        """
        if not comps:
            return self.root, ()
        cache = self.dirs
        hit = cache.get(comps)
        if hit is not None:
            cache.move_to_end(comps)
            return hit
        i = len(comps) - 1
        while i and comps[:i] not in cache:
            i -= 1
        fd, phys = cache[comps[:i]] if i else (self.root, ())
        for j in range(i, len(comps)):
            fd, phys = self._walk(fd, phys, comps[j], entry, missing)
            cache[comps[: j + 1]] = (fd, phys)
        return fd, phys

    def _walk(
        self, fd: int, phys: tuple[str, ...], comp: str, entry: str, missing: str | None
    ) -> tuple[int, tuple[str, ...]]:
        """Open ``comp`` in ``fd`` as a directory, following symlinks inside the root.

        Returns a new fd.  A symlink's absolute target restarts at the root; ``..`` pops the
        physical path and is refused at the root; more than _MAX_HOPS symlinks is refused.
        """
        pending = [comp]
        path = list(phys)
        cur, owned, hops = fd, False, 0
        try:
            while pending:
                c = pending.pop()
                if not c or c == ".":
                    continue
                if c == "..":
                    if not path:
                        raise UnsafePath(f"layer entry {entry!r}: a symlink leads outside the root")
                    nxt = os.open("..", _O_DIR, dir_fd=cur)
                    path.pop()
                else:
                    try:
                        nxt = os.open(c, _O_DIR, dir_fd=cur)
                    except FileNotFoundError:
                        if missing is not None:
                            raise InvalidContent(missing) from None
                        os.mkdir(c, 0o755, dir_fd=cur)
                        nxt = os.open(c, _O_DIR, dir_fd=cur)
                        os.fchown(nxt, 0, 0)  # not the gid of a setgid parent
                        os.fchmod(nxt, 0o755)  # nor the umask's mode, nor an inherited setgid bit
                        self.created.add((*path, c))
                        self.sgid_dirs.discard((*path, c))
                    except OSError as e:
                        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        st = os.lstat(c, dir_fd=cur)
                        if not stat.S_ISLNK(st.st_mode):
                            raise InvalidContent(
                                f"layer entry {entry!r}: {'/'.join((*path, c))} is not a directory"
                            ) from None
                        hops += 1
                        if hops > _MAX_HOPS:
                            raise UnsafePath(
                                f"layer entry {entry!r}: too many levels of symbolic links"
                            ) from None
                        target = os.readlink(c, dir_fd=cur)
                        if target.startswith("/"):
                            if owned:
                                os.close(cur)
                            cur, owned, path = self.root, False, []
                        pending.extend(reversed(target.split("/")))
                        continue
                    path.append(c)
                if owned:
                    os.close(cur)
                cur, owned = nxt, True
            if not owned:
                cur, owned = os.dup(cur), True
            return cur, tuple(path)
        except BaseException:
            if owned:
                os.close(cur)
            raise

    def _remove(self, pfd: int, leaf: str, phys: tuple[str, ...]) -> None:
        """Remove whatever is at ``leaf`` (not following it)."""
        try:
            st = os.lstat(leaf, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(leaf, dir_fd=pfd)
        else:
            os.unlink(leaf, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            # cached resolutions may have gone through it
            self.dead.extend(fd for fd, _ in self.dirs.values())
            self.dirs.clear()
            n = len(phys)
            self.dir_times = {p: t for p, t in self.dir_times.items() if p[:n] != phys}
            self.created = {p for p in self.created if p[:n] != phys}

    # -- entries

    def _times(self, m: _Member) -> tuple[int, int]:
        return (m.mtime_ns if m.atime_ns is None else m.atime_ns, m.mtime_ns)

    def _xattrs(
        self, target: int | str, m: _Member, entry: str, *, path: bool = False, link: bool = False
    ) -> None:
        for key, value in m.xattrs.items():
            if key.startswith(_PRIVATE_XATTRS):
                continue
            if key == _ACL_DEFAULT:
                self.umask = None  # files created below get their mode from the ACL
            if link and not key.startswith(("trusted.", "security.")):
                continue  # user.* xattrs are not allowed on symlinks
            try:
                os.setxattr(target, key, value, follow_symlinks=not path)
            except OSError as e:
                # As moby does: a filesystem (or file type) without xattr support is not fatal.
                if e.errno in (errno.ENOTSUP, errno.EPERM):
                    continue
                if e.errno in (errno.EINVAL, errno.ERANGE, errno.E2BIG):
                    raise InvalidContent(f"layer entry {entry!r}: bad xattr {key!r}: {e.strerror}") from e
                raise

    def _root_entry(self, m: _Member, entry: str) -> None:
        if m.type != _DIR:
            raise InvalidContent(f"layer entry {entry!r} names the root but is not a directory")
        _chown(os.fchown, entry, m, self.root)
        self._xattrs(self.root, m, entry)
        os.fchmod(self.root, m.mode)
        if m.mode & stat.S_ISGID:
            self.sgid_dirs.add(())
        else:
            self.sgid_dirs.discard(())
        self.dir_times[()] = self._times(m)

    def _file(self, pfd: int, leaf: str, phys: tuple[str, ...], m: _Member) -> None:
        # Fast path, two syscalls fewer for most files: create with the final mode when the
        # umask keeps it, and skip the chown when the kernel already gives the right owner.
        umask = self.umask
        quick_mode = umask is not None and not m.xattrs and not m.mode & (0o7000 | umask)
        mode = m.mode if quick_mode else 0o600
        try:
            fd = os.open(leaf, _O_NEWFILE, mode, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, leaf, phys)
            fd = os.open(leaf, _O_NEWFILE, mode, dir_fd=pfd)
        try:
            self.reader.copy_to(fd, m.size)
            if (m.uid, m.gid) != self.ids or phys[:-1] in self.sgid_dirs:
                _chown(os.fchown, name_of(m), m, fd)  # before the xattrs (chown drops security.capability)
            if m.xattrs:
                self._xattrs(fd, m, leaf)
            if not quick_mode:
                os.fchmod(fd, m.mode)  # after chown, which clears setuid/setgid
            os.utime(fd, ns=self._times(m))
        finally:
            os.close(fd)

    def _mkdir(self, pfd: int, leaf: str, phys: tuple[str, ...], comps: tuple[str, ...], m: _Member) -> None:
        try:
            os.mkdir(leaf, 0o700, dir_fd=pfd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(leaf, dir_fd=pfd).st_mode):
                self._remove(pfd, leaf, phys)
                os.mkdir(leaf, 0o700, dir_fd=pfd)
        hit = self.dirs.get(comps)
        if hit is not None and hit[1] == phys:
            fd = hit[0]
        else:
            fd = os.open(leaf, _O_DIR, dir_fd=pfd)
            if hit is not None:
                self.dead.append(hit[0])
            self.dirs[comps] = (fd, phys)  # its children usually follow
        _chown(os.fchown, name_of(m), m, fd)
        if m.xattrs:
            self._xattrs(fd, m, leaf)
        os.fchmod(fd, m.mode)
        if m.mode & stat.S_ISGID:
            self.sgid_dirs.add(phys)
        else:
            self.sgid_dirs.discard(phys)
        self.dir_times[phys] = self._times(m)  # set at the end: children change the mtime

    def _symlink(self, pfd: int, leaf: str, phys: tuple[str, ...], m: _Member, entry: str) -> None:
        target = os.fsdecode(m.linkname)
        if not target or "\0" in target:
            raise InvalidContent(f"layer entry {entry!r}: bad symlink target {target!r}")
        try:
            os.symlink(target, leaf, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, leaf, phys)
            os.symlink(target, leaf, dir_fd=pfd)
        _chown(os.chown, name_of(m), m, leaf, dir_fd=pfd, follow_symlinks=False)
        if m.xattrs:
            self._xattrs(f"/proc/self/fd/{pfd}/{leaf}", m, entry, path=True, link=True)
        os.utime(leaf, ns=self._times(m), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, leaf: str, phys: tuple[str, ...], m: _Member, entry: str) -> None:
        link = os.fsdecode(m.linkname)
        tcomps = _components(link, f"{entry} (hardlink to {link!r})")
        if not tcomps:
            raise InvalidContent(f"layer entry {entry!r}: hardlink to the root")
        not_found = f"hardlink target not found: {link!r} (for {entry!r})"
        tfd, tphys = self._dir(tcomps[:-1], entry, missing=not_found)
        tleaf = tcomps[-1]
        try:
            st = os.lstat(tleaf, dir_fd=tfd)
        except FileNotFoundError:
            raise InvalidContent(not_found) from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidContent(f"layer entry {entry!r}: hardlink to a directory {link!r}")
        if tphys + (tleaf,) == phys:
            return  # already is that file
        # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed
        try:
            try:
                os.link(tleaf, leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileExistsError:
                self._remove(pfd, leaf, phys)
                os.link(tleaf, leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidContent(not_found) from None

    def _node(self, pfd: int, leaf: str, phys: tuple[str, ...], m: _Member, entry: str) -> None:
        if m.type == _FIFO:

            def make() -> None:
                os.mkfifo(leaf, 0o600, dir_fd=pfd)

        else:
            kind = stat.S_IFCHR if m.type == _CHR else stat.S_IFBLK
            try:
                dev = os.makedev(m.major, m.minor)
            except (OverflowError, ValueError) as e:
                raise InvalidContent(f"layer entry {entry!r}: bad device number") from e

            def make() -> None:
                os.mknod(leaf, kind | 0o600, dev, dir_fd=pfd)

        try:
            try:
                make()
            except FileExistsError:
                self._remove(pfd, leaf, phys)
                make()
        except PermissionError:
            from kran import rootless

            if m.type == _FIFO or not rootless.active():
                raise
            # no process in a user namespace may mknod a device: skipped, as moby and
            # containers/storage do in rootless mode (a container gets its /dev from kran anyway;
            # the layer's digest is of the tar stream, not of what was made)
            return
        _chown(os.chown, name_of(m), m, leaf, dir_fd=pfd, follow_symlinks=False)
        if m.xattrs:
            self._xattrs(f"/proc/self/fd/{pfd}/{leaf}", m, entry, path=True)
        try:
            os.chmod(leaf, m.mode, dir_fd=pfd, follow_symlinks=False)
        except (NotImplementedError, OSError):
            # glibc emulates AT_SYMLINK_NOFOLLOW through /proc; without it, chmod the node we
            # just made (not a symlink: nothing else writes in the caller's fresh directory).
            os.chmod(leaf, m.mode, dir_fd=pfd)
        os.utime(leaf, ns=self._times(m), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, pfd: int, pphys: tuple[str, ...], leaf: str, m: _Member, entry: str) -> None:
        if leaf == OPAQUE_MARKER:
            if self.overlay:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
            else:
                for child in os.listdir(pfd):
                    if (*pphys, child) not in self.created:
                        self._remove(pfd, child, (*pphys, child))
            return
        if leaf.startswith(_AUFS_META):
            return  # other AUFS metadata (.wh..wh.plnk, ...): ignored, as Docker does
        name = leaf[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise UnsafePath(f"layer entry {entry!r}: bad whiteout")
        target = (*pphys, name)
        if target in self.created:
            return  # image-spec: a whiteout hides lower layers' files only, not its own layer's
        self._remove(pfd, name, target)
        if self.overlay:
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)  # mode 0, owner root
            os.utime(name, ns=self._times(m), dir_fd=pfd, follow_symlinks=False)  # reproducible
            self.created.add(target)

    def _set_dir_times(self) -> None:
        # Children first (reverse order puts a/b before a), siblings together for the fd cache.
        for phys in sorted(self.dir_times, reverse=True):
            self._reap()
            times = self.dir_times[phys]
            if not phys:
                os.utime(self.root, ns=times)
                continue
            pfd, _ = self._dir(phys[:-1], "/".join(phys), missing=f"directory vanished: {'/'.join(phys)}")
            os.utime(phys[-1], ns=times, dir_fd=pfd, follow_symlinks=False)


# -- write ------------------------------------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _listing(dfd: int, overlay: bool, live: bool = False) -> list[tuple[str, os.stat_result]]:
    """A directory's entries, sorted by the bytes of the names they get in the tar (``live``: an
    entry removed between readdir and its lstat is left out)."""
    items = []
    with os.scandir(dfd) as it:
        for e in it:
            try:
                items.append((e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:
                if not live:
                    raise

    def key(item: tuple[str, os.stat_result]) -> bytes:
        name = os.fsencode(item[0])
        return b".wh." + name if overlay and _is_whiteout(item[1]) else name

    items.sort(key=key)
    return items


def _read_xattrs(target: int | str) -> dict[str, bytes]:
    """All xattrs of an fd, or of a path without following it."""
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
        return {n: os.getxattr(target, n, follow_symlinks=follow) for n in names}
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return {}
        raise


def _public(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in xattrs.items() if not k.startswith(_PRIVATE_XATTRS)}


def write_layer(root: str | os.PathLike[str], out: BinaryIO, *, whiteout_format: str = "overlay",
                live: bool = False) -> None:
    """Write the tree ``root`` (an overlay upper dir or a layer diff) as a deterministic layer tar.

    PAX format; entries depth-first, each directory's names in byte order (as ``tar
    --sort=name``), an opaque marker right after its directory; names without ``./``,
    directories with a trailing ``/``; the root itself is not an entry.  Keeps numeric owners
    (no user names), modes (setuid/setgid/sticky), mtimes (whole seconds, as Docker writes
    them), symlinks, hardlinks (an inode seen again is a link to its first name), devices,
    fifos and xattrs (``SCHILY.xattr.``); sockets are skipped.  With
    ``whiteout_format="overlay"`` a char device 0/0 becomes an empty 0600 file ``.wh.NAME`` and
    an opaque dir gets a ``DIR/.wh..wh..opq`` entry; ``"none"`` writes them as they are.
    The tree is read with fd-relative, no-follow calls: a symlink swapped in while writing is
    written as a symlink, never followed.  xattrs of symlinks and device nodes are read through
    ``/proc/self/fd``.

    ``live``: the tree may change while it is read (a running container's layer taken without
    freezing it, ``commit --pause=false``, ``export``): an entry removed between the listing and
    its read is left out, a file replaced since the listing is read as it is now, and one that
    shrinks while read is padded with zeros to the size its header gave (GNU tar does the same;
    moby's archive logs and skips such entries).  Without it any of these is an error.
    """
    overlay = _check_format(whiteout_format)
    w = _TarWriter(out, live=live)
    gone = (FileNotFoundError, NotADirectoryError) if live else ()
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[int, bytes, Iterator[tuple[str, os.stat_result]]]] = []
    try:
        if overlay and _read_xattrs(root_fd).get(OPAQUE_XATTR) == b"y":
            st = os.fstat(root_fd)
            w.add(OPAQUE_MARKER.encode(), _REG, st, mode=st.st_mode & 0o777)
        links: dict[tuple[int, int], bytes] = {}
        stack.append((root_fd, b"", iter(_listing(root_fd, overlay, live))))
        while stack:
            dfd, prefix, it = stack[-1]
            item = next(it, None)
            if item is None:
                stack.pop()
                if dfd != root_fd:
                    os.close(dfd)
                continue
            name, st = item
            bname = prefix + os.fsencode(name)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                try:
                    cfd = os.open(name, _O_DIR, dir_fd=dfd)
                except gone:
                    continue  # removed (or replaced by a non-directory) since the listing
                try:
                    st = os.fstat(cfd)
                    xattrs = _read_xattrs(cfd)
                    listing = _listing(cfd, overlay, live)
                except BaseException:
                    os.close(cfd)
                    raise
                stack.append((cfd, bname + b"/", iter(listing)))
                w.add(bname + b"/", _DIR, st, xattrs=_public(xattrs))
                if overlay and xattrs.get(OPAQUE_XATTR) == b"y":
                    w.add(bname + b"/" + OPAQUE_MARKER.encode(), _REG, st, mode=st.st_mode & 0o777)
                continue
            if overlay and _is_whiteout(st):
                # moby's overlay converter: the whiteout becomes an empty 0600 regular file
                w.add(prefix + b".wh." + os.fsencode(name), _REG, st, mode=0o600)
                continue
            if stat.S_ISSOCK(mode):
                continue  # tar has no sockets (GNU tar skips them too)
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = links.get(key)
                if first is not None:
                    w.add(bname, _LNK, st, linkname=first)
                    continue
                links[key] = bname
            if stat.S_ISREG(mode):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
                except OSError as e:
                    # ELOOP: replaced by a symlink since the listing (never followed)
                    if live and e.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                        continue
                    raise
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode) or (fst.st_ino != st.st_ino and not live):
                        if live:
                            continue
                        raise InvalidContent(f"{os.fsdecode(bname)} changed while writing the layer")
                    xattrs = _read_xattrs(fd)
                    w.add(bname, _REG, fst, xattrs=_public(xattrs), data_fd=fd)
                finally:
                    os.close(fd)
                continue
            try:
                xattrs = _read_xattrs(f"/proc/self/fd/{dfd}/{name}")
                target = os.fsencode(os.readlink(name, dir_fd=dfd)) if stat.S_ISLNK(mode) else b""
            except gone:
                continue
            except OSError as e:
                if live and e.errno == errno.EINVAL:  # no longer a symlink: left out, as removed
                    continue
                raise
            if stat.S_ISLNK(mode):
                w.add(bname, _SYM, st, linkname=target, xattrs=_public(xattrs))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                typ = _CHR if stat.S_ISCHR(mode) else _BLK
                w.add(bname, typ, st, xattrs=_public(xattrs), dev=st.st_rdev)
            elif stat.S_ISFIFO(mode):
                w.add(bname, _FIFO, st, xattrs=_public(xattrs))
        w.close()
    finally:
        for dfd, _, _ in stack:
            if dfd != root_fd:
                os.close(dfd)
        os.close(root_fd)


def _oct(v: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, v)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for ustar's 155 + 100 byte fields, or None when a PAX path is needed."""
    if not name.isascii():
        return None
    if len(name) <= 100:
        return b"", name
    # the last '/' leaving a non-empty name: if that name is too long, any other is longer
    i = name.rfind(b"/", 0, min(155, len(name) - 2) + 1)
    if i > 0 and len(name) - i - 1 <= 100:
        return name[:i], name[i + 1 :]
    return None


class _TarWriter:
    _MAX8 = 8**7  # octal capacity of 8-byte fields
    _MAX12 = 8**11

    def __init__(self, out: BinaryIO, *, live: bool = False) -> None:
        self.out = out
        self.live = live

    def add(
        self,
        name: bytes,
        typ: bytes,
        st: os.stat_result,
        *,
        mode: int | None = None,
        linkname: bytes = b"",
        xattrs: dict[str, bytes] | None = None,
        data_fd: int | None = None,
        dev: int = 0,
    ) -> None:
        size = st.st_size if data_fd is not None else 0
        uid, gid = st.st_uid, st.st_gid
        mtime = st.st_mtime_ns // 1_000_000_000  # whole seconds, as Docker writes them
        pax: list[tuple[bytes, bytes]] = []
        split = _split_ustar(name)
        if split is None:
            pax.append((b"path", name))
            prefix, hname = b"", name[:100]
        else:
            prefix, hname = split
        if len(linkname) > 100 or not linkname.isascii():
            pax.append((b"linkpath", linkname))
        if any(_not_utf8(v) for _, v in pax):
            pax.insert(0, (b"hdrcharset", b"BINARY"))
        if size >= self._MAX12:
            pax.append((b"size", b"%d" % size))
        if not 0 <= uid < self._MAX8:
            pax.append((b"uid", b"%d" % uid))
        if not 0 <= gid < self._MAX8:
            pax.append((b"gid", b"%d" % gid))
        if not 0 <= mtime < self._MAX12:
            pax.append((b"mtime", b"%d" % mtime))
        for k in sorted(xattrs or ()):
            pax.append((b"SCHILY.xattr." + os.fsencode(k), xattrs[k]))  # type: ignore[index]
        if pax:
            records = b"".join(_pax_record(k, v) for k, v in pax)
            self.out.write(
                self._header(b"././@PaxHeader", _PAX, 0o644, 0, 0, len(records), 0, b"", b"", 0, 0)
            )
            self.out.write(records + bytes(-len(records) % _BLOCK))
        perm = (st.st_mode & 0o7777) if mode is None else mode
        self.out.write(
            self._header(
                hname,
                typ,
                perm,
                uid if uid < self._MAX8 else 0,
                gid if gid < self._MAX8 else 0,
                size if size < self._MAX12 else 0,
                mtime if 0 <= mtime < self._MAX12 else 0,
                linkname[:100],
                prefix,
                os.major(dev) if dev else 0,
                os.minor(dev) if dev else 0,
            )
        )
        if data_fd is not None:
            left = size
            while left:
                chunk = os.read(data_fd, min(left, _CHUNK))
                if not chunk:
                    if not self.live:
                        raise InvalidContent(f"{os.fsdecode(name)} shrank while writing the layer")
                    chunk = bytes(min(left, _CHUNK))  # truncated while read: zeros, as GNU tar pads
                self.out.write(chunk)
                left -= len(chunk)
            self.out.write(bytes(-size % _BLOCK))

    @staticmethod
    def _header(
        name: bytes,
        typ: bytes,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime: int,
        linkname: bytes,
        prefix: bytes,
        major: int,
        minor: int,
    ) -> bytes:
        blk = b"".join(
            (
                name.ljust(100, b"\0"),
                _oct(mode, 8),
                _oct(uid, 8),
                _oct(gid, 8),
                _oct(size, 12),
                _oct(mtime, 12),
                b"        ",
                typ,
                linkname.ljust(100, b"\0"),
                b"ustar\x0000",
                bytes(64),  # uname, gname: numeric owners only
                _oct(major, 8),
                _oct(minor, 8),
                prefix.ljust(155, b"\0"),
                bytes(12),
            )
        )
        return blk[:148] + b"%06o\0 " % sum(blk) + blk[156:]

    def close(self) -> None:
        self.out.write(bytes(2 * _BLOCK))


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
