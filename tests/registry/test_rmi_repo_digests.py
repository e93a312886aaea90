"""``kran rmi`` of a repository's last tag takes that repository's digests with it (moby's
ImageDelete), also while the image keeps tags of other repositories."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_last_tag_of_a_repository_takes_its_digest_then_the_image_goes(kran, busybox, registry):
    name = f"{registry.host}/pushed"
    kran("tag", "busybox", name)
    kran("push", "-q", name)
    digest = kran("images", "--digests", "--format", "{{.Digest}}", name).out.strip()
    assert digest.startswith("sha256:")
    # busybox:latest still tags the image: only the pushed repository's names go
    assert kran("rmi", name).out.splitlines() == [f"Untagged: {name}:latest", f"Untagged: {name}@{digest}"]
    assert kran("images", "--digests", "--format", "{{.Repository}} {{.Digest}}").out == "busybox <none>\n"
    # and the last tag now deletes the image, as with docker
    out = kran("rmi", "busybox").out.splitlines()
    assert out[0] == "Untagged: busybox:latest"
    assert out[1] == f"Deleted: {busybox}"
    assert kran("images", "-aq").out == ""


def test_a_digest_stays_while_its_repository_has_another_tag(kran, busybox, registry):
    name = f"{registry.host}/two"
    kran("tag", "busybox", f"{name}:a")
    kran("tag", "busybox", f"{name}:b")
    kran("push", "-q", f"{name}:a")
    digest = kran("images", "--digests", "--format", "{{.Digest}}", f"{name}:a").out.strip()
    assert kran("rmi", f"{name}:a").out == f"Untagged: {name}:a\n"
    assert kran("images", "--digests", "--format", "{{.Tag}} {{.Digest}}", name).out == f"b {digest}\n"
