"""OCI image-spec and Docker image structures as typed data (see kran.codec for JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kran.codec import extra, jf

# Media types (OCI image-spec media-types.md; Docker distribution manifest v2 schema 2).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    architecture: str = jf("architecture", keep=True, default="")
    os: str = jf("os", keep=True, default="")
    variant: str = jf("variant", default="")
    os_version: str = jf("os.version", default="")
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str = jf("mediaType", keep=True, default="")
    digest: str = jf("digest", keep=True, default="")
    size: int = jf("size", keep=True, default=0)
    urls: list[str] = jf("urls", factory=list)
    annotations: dict[str, str] = jf("annotations", factory=dict)
    platform: Platform | None = jf("platform")
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    schema_version: int = jf("schemaVersion", keep=True, default=2)
    media_type: str = jf("mediaType", default="")
    config: Descriptor = jf("config", keep=True, factory=Descriptor)
    layers: list[Descriptor] = jf("layers", keep=True, factory=list)
    annotations: dict[str, str] = jf("annotations", factory=dict)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    schema_version: int = jf("schemaVersion", keep=True, default=2)
    media_type: str = jf("mediaType", default="")
    manifests: list[Descriptor] = jf("manifests", keep=True, factory=list)
    annotations: dict[str, str] = jf("annotations", factory=dict)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    test: list[str] = jf("Test", factory=list)
    interval: int = jf("Interval", default=0)
    timeout: int = jf("Timeout", default=0)
    start_period: int = jf("StartPeriod", default=0)
    retries: int = jf("Retries", default=0)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """The ``config`` object of an image config (what a container starts with)."""

    user: str = jf("User", default="")
    exposed_ports: dict[str, Any] = jf("ExposedPorts", factory=dict)
    env: list[str] = jf("Env", factory=list)
    entrypoint: list[str] | None = jf("Entrypoint")
    cmd: list[str] | None = jf("Cmd")
    volumes: dict[str, Any] = jf("Volumes", factory=dict)
    working_dir: str = jf("WorkingDir", default="")
    labels: dict[str, str] = jf("Labels", factory=dict)
    stop_signal: str = jf("StopSignal", default="")
    args_escaped: bool = jf("ArgsEscaped", default=False)
    healthcheck: HealthConfig | None = jf("Healthcheck")
    on_build: list[str] = jf("OnBuild", factory=list)
    shell: list[str] = jf("Shell", factory=list)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class RootFS:
    type: str = jf("type", keep=True, default="layers")
    diff_ids: list[str] = jf("diff_ids", keep=True, factory=list)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    created: str = jf("created", default="")
    created_by: str = jf("created_by", default="")
    author: str = jf("author", default="")
    comment: str = jf("comment", default="")
    empty_layer: bool = jf("empty_layer", default=False)
    extra: dict[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The image configuration blob (OCI image-spec config.md); its digest is the image ID."""

    created: str = jf("created", default="")
    author: str = jf("author", default="")
    architecture: str = jf("architecture", keep=True, default="")
    os: str = jf("os", keep=True, default="")
    variant: str = jf("variant", default="")
    config: ContainerConfig = jf("config", factory=ContainerConfig)
    rootfs: RootFS = jf("rootfs", keep=True, factory=RootFS)
    history: list[History] = jf("history", factory=list)
    extra: dict[str, Any] = extra()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image-spec config.md "Layer ChainID": ChainID(L0)=DiffID(L0),
    ChainID(L0|..|Ln) = sha256(ChainID(L0|..|Ln-1) + " " + DiffID(Ln))."""
    import hashlib

    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out
