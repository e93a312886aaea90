"""Mount an overlay: the kernel's overlayfs, or fuse-overlayfs where a rootless kernel refuses it.

Linux >= 5.11 mounts overlayfs inside a user namespace (this project's hosts do); an older or
restricted kernel says EPERM/EINVAL there, and Podman's answer is fuse-overlayfs, a FUSE
implementation of the same layout (same upper/work dirs, same whiteouts).  It is used only then,
and only in rootless mode: root always gets the kernel's.
"""

from __future__ import annotations

import errno
import os


def mount_overlay(target: str, opts: str, readonly: bool = False) -> None:
    from kran.sys.fsutil import MS_RDONLY, mount

    try:
        if forced():
            raise OSError(errno.EPERM, "fuse-overlayfs asked for (KRAN_FUSE_OVERLAY=1)", target)
        mount("overlay", target, "overlay", MS_RDONLY if readonly else 0, opts)
        return
    except OSError as e:
        from kran import rootless

        if not rootless.active() or e.errno not in (errno.EPERM, errno.EINVAL, errno.ENODEV):
            raise
        kernel_error = e
    _fuse(target, opts, readonly, kernel_error)


def _fuse(target: str, opts: str, readonly: bool, kernel_error: OSError) -> None:
    import shutil
    import subprocess

    exe = shutil.which("fuse-overlayfs")
    if not exe:
        raise OSError(kernel_error.errno, f"{kernel_error.strerror} (the kernel refuses overlayfs in this user"
                      " namespace; install fuse-overlayfs: apt-get install fuse-overlayfs)", target)
    o = opts + (",ro" if readonly else "")
    p = subprocess.run([exe, "-o", o, target], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip() and "argument ignored" not in ln]
        why = lines[0] if lines else f"exit status {p.returncode}"
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            why += " (/dev/fuse must be usable by you: Debian's udev makes it 0666)"
        raise OSError(errno.EIO, f"fuse-overlayfs: {why}", target)


def forced() -> bool:
    """KRAN_FUSE_OVERLAY=1 (tests, or a kernel that mounts overlayfs but misbehaves in a userns)."""
    return os.environ.get("KRAN_FUSE_OVERLAY") == "1"
