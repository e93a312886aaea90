"""``GET /distribution/{name}/json``: what a registry says an image reference points at, without
pulling it -- the descriptor of the manifest (or index) and the platforms it covers.

The registry is asked every time (docker does the same: this is how a client checks what a tag
means *now*).  Bytes from the registry are verified against their digest by the client.
"""

from __future__ import annotations

import json
from typing import Any

from kran.image import reference as refs


def inspect(name: str, *, creds: Any = None) -> dict[str, Any]:
    """dockerd's DistributionInspect: ``{"Descriptor": {...}, "Platforms": [{...}]}``."""
    from kran.engine.registry import _denied_as_docker, _first_ok
    from kran.registry.client import INDEX_TYPES, Session
    from kran.registry.config import RegistryConfig

    ref = refs.parse_normalized(name)
    full = ref if ref.digest else ref.tagged_or_latest()
    sessions = Session.connect(ref.domain, RegistryConfig.load(), pull=True, creds=creds)
    target = full.digest or full.tag or "latest"

    def fetch(s: Session) -> tuple[Session, bytes, str, str]:
        data, mt, digest = s.get_manifest(ref.path, target)
        return s, data, mt, digest

    session, data, mt, digest = _denied_as_docker(full, lambda: _first_ok(sessions, fetch))
    doc = json.loads(data)
    platforms: list[dict[str, Any]] = []
    if mt in INDEX_TYPES:
        for m in doc.get("manifests") or []:
            p = m.get("platform") if isinstance(m, dict) else None
            if isinstance(p, dict) and p.get("os") != "unknown":  # attestation manifests
                platforms.append(_platform(p))
    else:
        cfg_desc = doc.get("config") or {}
        if isinstance(cfg_desc, dict) and cfg_desc.get("digest"):
            cfg = json.loads(session.fetch_blob_bytes(ref.path, str(cfg_desc["digest"]),
                                                      int(cfg_desc.get("size") or 0), limit=8 << 20))
            platforms.append(_platform(cfg))
    return {"Descriptor": {"mediaType": mt, "digest": digest, "size": len(data)}, "Platforms": platforms}


def _platform(p: dict[str, Any]) -> dict[str, Any]:
    # docker's ocispec.Platform: os and architecture always, the rest when set
    out: dict[str, Any] = {"architecture": str(p.get("architecture") or ""), "os": str(p.get("os") or "")}
    for k in ("os.version", "variant"):
        if p.get(k):
            out[k] = p[k]
    if p.get("os.features"):
        out["os.features"] = p["os.features"]
    return out
