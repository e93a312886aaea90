"""kran.db: the one SQLite database (WAL) that records what the store holds.

Files on disk are written first (temp name, fsync, rename) and registered here second, in one
transaction; anything on disk that is not registered is garbage that ``Store.gc`` removes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

SCHEMA_VERSION = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layers(
    chain_id TEXT PRIMARY KEY,
    diff_id  TEXT NOT NULL,
    parent   TEXT,
    size     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images(
    id       TEXT PRIMARY KEY,      -- digest of the config blob (Docker's image ID)
    manifest TEXT NOT NULL,         -- digest of the manifest blob kept for it
    config   TEXT NOT NULL,         -- the config JSON, also kept as a blob
    created  REAL NOT NULL,
    size     INTEGER NOT NULL,
    added    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers(
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    chain_id   TEXT NOT NULL REFERENCES layers(chain_id),
    blob       TEXT NOT NULL,       -- digest of the (maybe compressed) layer blob
    media_type TEXT NOT NULL,
    blob_size  INTEGER NOT NULL,
    PRIMARY KEY(image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags(
    name     TEXT PRIMARY KEY,      -- full reference: docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests(
    name     TEXT NOT NULL,         -- docker.io/library/busybox@sha256:...
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY(name)
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers(
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,   -- without the leading "/"
    image_id    TEXT NOT NULL REFERENCES images(id),
    image_name  TEXT NOT NULL,          -- what the user typed (docker's .Config.Image)
    created     REAL NOT NULL,
    config      TEXT NOT NULL,          -- docker's container Config (JSON)
    host_config TEXT NOT NULL,          -- docker's HostConfig (JSON)
    exit_code   INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    removing    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
CREATE TABLE IF NOT EXISTS volumes(
    name      TEXT PRIMARY KEY,
    driver    TEXT NOT NULL DEFAULT 'local',
    created   REAL NOT NULL,
    labels    TEXT NOT NULL DEFAULT '{}',  -- JSON object
    options   TEXT NOT NULL DEFAULT '{}',  -- JSON object (driver options: type, device, o)
    anonymous INTEGER NOT NULL DEFAULT 0
);
-- which container uses which volume: written in the container's create transaction, so a volume
-- that a container (running or not) references is never pruned, even after a crash (moby#38883)
CREATE TABLE IF NOT EXISTS volume_refs(
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    volume       TEXT NOT NULL REFERENCES volumes(name),
    PRIMARY KEY(container_id, volume)
);
CREATE INDEX IF NOT EXISTS volume_refs_volume ON volume_refs(volume);
CREATE TABLE IF NOT EXISTS networks(
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,           -- bridge, host, null
    created    REAL NOT NULL,
    subnet     TEXT NOT NULL DEFAULT '',
    gateway    TEXT NOT NULL DEFAULT '',
    ip_range   TEXT NOT NULL DEFAULT '',
    bridge     TEXT NOT NULL DEFAULT '',  -- the host's bridge device
    internal   INTEGER NOT NULL DEFAULT 0,
    attachable INTEGER NOT NULL DEFAULT 0,
    builtin    INTEGER NOT NULL DEFAULT 0,
    labels     TEXT NOT NULL DEFAULT '{}',
    options    TEXT NOT NULL DEFAULT '{}'
);
-- a container's membership of a network (docker's endpoint settings), from create/connect to
-- disconnect/rm. ip and host_if are set only while the container runs (the address lease)
CREATE TABLE IF NOT EXISTS endpoints(
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    network_id   TEXT NOT NULL REFERENCES networks(id),
    idx          INTEGER NOT NULL,        -- eth<idx> inside the container
    aliases      TEXT NOT NULL DEFAULT '[]',
    want_ip      TEXT NOT NULL DEFAULT '',
    endpoint_id  TEXT NOT NULL DEFAULT '',
    ip           TEXT,
    mac          TEXT NOT NULL DEFAULT '',
    host_if      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY(container_id, network_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_ip ON endpoints(network_id, ip);
CREATE INDEX IF NOT EXISTS endpoints_network ON endpoints(network_id);
-- what docker records of a network beyond the columns above (EnableIPv6, the IPAM driver's
-- options, auxiliary addresses, an IPv6 pool): one JSON document (kran.engine.netrecord.NetExtra)
CREATE TABLE IF NOT EXISTS network_extra(
    network_id TEXT PRIMARY KEY REFERENCES networks(id) ON DELETE CASCADE,
    doc        TEXT NOT NULL DEFAULT '{}'
);
-- an endpoint's requested settings beyond aliases and IPv4 (links, driver options, link-local
-- and IPv6 addresses, MAC: kran.engine.netrecord.EndpointExtra), and its IPv6 lease while it runs
CREATE TABLE IF NOT EXISTS endpoint_extra(
    container_id TEXT NOT NULL,
    network_id   TEXT NOT NULL,
    doc          TEXT NOT NULL DEFAULT '{}',
    ip6          TEXT,
    PRIMARY KEY(container_id, network_id),
    FOREIGN KEY(container_id, network_id) REFERENCES endpoints(container_id, network_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS endpoint_extra_ip6 ON endpoint_extra(network_id, ip6);
-- host ports a running container holds
CREATE TABLE IF NOT EXISTS ports(
    container_id   TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    host_ip        TEXT NOT NULL,
    host_port      INTEGER NOT NULL,
    proto          TEXT NOT NULL,
    container_ip   TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY(host_ip, host_port, proto)
);
CREATE INDEX IF NOT EXISTS ports_container ON ports(container_id);
"""


def connect(path: str) -> sqlite3.Connection:
    """Open (and create on first use) the store database."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=60000")
    row = conn.execute("PRAGMA user_version").fetchone()
    if row[0] < SCHEMA_VERSION:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
