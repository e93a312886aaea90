"""sethostname(2) / setdomainname(2)."""

from __future__ import annotations

from kran.sys.libc import check, libc


def sethostname(name: str) -> None:
    b = name.encode()
    check(libc.sethostname(b, len(b)), "sethostname")


def setdomainname(name: str) -> None:
    b = name.encode()
    check(libc.setdomainname(b, len(b)), "setdomainname")
