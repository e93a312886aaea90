"""``run``/``create`` flags -> docker's container Config and HostConfig (pure; what the docker CLI sends)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from kran.cli.flags import Flag
from kran.errors import InvalidArgument

_VOLNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

RUN_FLAGS = (
    Flag("add-host", "", "list", "list", "Add a custom host-to-IP mapping (host:ip)"),
    Flag("blkio-weight", "", "int", "uint16", "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)"),
    Flag("blkio-weight-device", "", "list", "list", "Block IO weight (relative device weight) (default [])"),
    Flag("cap-add", "", "list", "list", "Add Linux capabilities"),
    Flag("cap-drop", "", "list", "list", "Drop Linux capabilities"),
    Flag("cgroup-parent", "", "str", "string", "Optional parent cgroup for the container"),
    Flag("cpu-period", "", "int", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    Flag("cpu-quota", "", "int", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    Flag("cpu-shares", "c", "int", "int", "CPU shares (relative weight)"),
    Flag("cpus", "", "str", "decimal", "Number of CPUs"),
    Flag("cpuset-cpus", "", "str", "string", "CPUs in which to allow execution (0-3, 0,1)"),
    Flag("cpuset-mems", "", "str", "string", "MEMs in which to allow execution (0-3, 0,1)"),
    Flag("detach", "d", help="Run container in background and print container ID"),
    Flag("detach-keys", "", "str", "string", "Override the key sequence for detaching a container"),
    Flag("device-read-bps", "", "list", "list", "Limit read rate (bytes per second) from a device (default [])"),
    Flag("device-read-iops", "", "list", "list", "Limit read rate (IO per second) from a device (default [])"),
    Flag("device-write-bps", "", "list", "list", "Limit write rate (bytes per second) to a device (default [])"),
    Flag("device-write-iops", "", "list", "list", "Limit write rate (IO per second) to a device (default [])"),
    Flag("dns", "", "list", "list", "Set custom DNS servers"),
    Flag("dns-option", "", "list", "list", "Set DNS options"),
    Flag("dns-opt", "", "list", "list", "Set DNS options", hidden=True),
    Flag("dns-search", "", "list", "list", "Set custom DNS search domains"),
    Flag("domainname", "", "str", "string", "Container NIS domain name"),
    Flag("entrypoint", "", "str", "string", "Overwrite the default ENTRYPOINT of the image"),
    Flag("env", "e", "list", "list", "Set environment variables"),
    Flag("env-file", "", "list", "list", "Read in a file of environment variables"),
    Flag("expose", "", "list", "list", "Expose a port or a range of ports"),
    Flag("hostname", "h", "str", "string", "Container host name"),
    Flag("init", help="Run an init inside the container that forwards signals and reaps processes"),
    Flag("interactive", "i", help="Keep STDIN open even if not attached"),
    Flag("ip", "", "str", "string", "IPv4 address (e.g., 172.30.100.104)"),
    Flag("label", "l", "list", "list", "Set meta data on a container"),
    Flag("lockdown", help="Lock the container down: read-only root, tmpfs /tmp and home, no capabilities, no files out"),
    Flag("log-driver", "", "str", "string", "Logging driver for the container"),
    Flag("log-opt", "", "list", "list", "Log driver options"),
    Flag("mac-address", "", "str", "string", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag("max-lifetime", "", "str", "duration", "Stop the container after it has run this long, on every start (e.g. 2h, 90m)"),
    Flag("memory", "m", "str", "bytes", "Memory limit"),
    Flag("memory-reservation", "", "str", "bytes", "Memory soft limit"),
    Flag("mount", "", "list", "mount", "Attach a filesystem mount to the container"),
    Flag("memory-swap", "", "str", "bytes", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    Flag("name", "", "str", "string", "Assign a name to the container"),
    Flag("network", "", "list", "network", "Connect a container to a network"),
    Flag("net", "", "list", "network", "Connect a container to a network", hidden=True),
    Flag("network-alias", "", "list", "list", "Add network-scoped alias for the container"),
    Flag("net-alias", "", "list", "list", "Add network-scoped alias for the container", hidden=True),
    Flag("network-rate", "", "str", "rate",
         "Limit bandwidth: RATE both ways, or EGRESS/INGRESS (tc units: 10mbit, 500kbit/2mbit, 1mbps = bytes/s)"),
    Flag("pids-limit", "", "int", "int", "Tune container pids limit (set -1 for unlimited)"),
    Flag("privileged", help="Give extended privileges to this container"),
    Flag("profile", "", "str", "string", "Apply the policy profile NAME.toml from the config dir's profiles/"),
    Flag("publish", "p", "list", "list", "Publish a container's port(s) to the host"),
    Flag("publish-all", "P", help="Publish all exposed ports to random ports"),
    Flag("pull", "", "str", "string", 'Pull image before running ("always", "missing", "never")', default="missing"),
    Flag("quiet", "q", help="Suppress the pull output"),
    Flag("read-only", help="Mount the container's root filesystem as read only"),
    Flag("health-cmd", "", "str", "string", "Command to run to check health"),
    Flag("health-interval", "", "str", "duration", "Time between running the check (ms|s|m|h) (default 0s)"),
    Flag("health-on-failure", "", "str", "string", "Action to take once the container turns unhealthy "
         "(none, kill, restart, stop: Podman's)"),
    Flag("health-retries", "", "int", "int", "Consecutive failures needed to report unhealthy"),
    Flag("health-start-interval", "", "str", "duration",
         "Time between running the check during the start period (ms|s|m|h) (default 0s)"),
    Flag("health-start-period", "", "str", "duration",
         "Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)"),
    Flag("health-timeout", "", "str", "duration", "Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
    Flag("no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    Flag("recreate-every", "", "str", "duration", "Restart the container fresh after every DURATION of running (e.g. 24h)"),
    Flag("restart", "", "str", "string", "Restart policy to apply when a container exits", default="no"),
    Flag("restart-fresh", help="Begin every restart with an empty read-write layer (volumes kept)"),
    Flag("rm", help="Automatically remove the container and its associated anonymous volumes when it exits"),
    Flag("runtime", "", "str", "string", "Runtime to use for this container"),
    Flag("schedule", "", "str", "string", "Run only in these local time windows (e.g. 'Mon-Fri 12:00-13:00,17:00-23:00')"),
    Flag("security-opt", "", "list", "list", "Security Options"),
    Flag("shm-size", "", "str", "bytes", "Size of /dev/shm"),
    Flag("sig-proxy", "", "bool", help="Proxy received signals to the process", default=True),
    Flag("stop-signal", "", "str", "string", "Signal to stop the container"),
    Flag("stop-timeout", "", "int", "int", "Timeout (in seconds) to stop a container"),
    Flag("sysctl", "", "list", "map", "Sysctl options"),
    Flag("tmpfs", "", "list", "list", "Mount a tmpfs directory"),
    Flag("tty", "t", help="Allocate a pseudo-TTY"),
    Flag("ulimit", "", "list", "ulimit", "Ulimit options"),
    Flag("volume", "v", "list", "list", "Bind mount a volume"),
    Flag("volumes-from", "", "list", "list", "Mount volumes from the specified container(s)"),
    Flag("user", "u", "str", "string", "Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("workdir", "w", "str", "string", "Working directory inside the container"),
)
CREATE_EXCLUDE = {"detach", "detach-keys", "rm", "sig-proxy"}
CREATE_FLAGS = tuple(f for f in RUN_FLAGS if f.long not in CREATE_EXCLUDE or f.long == "rm")


def _bytes(v: str, flag: str) -> int:
    from kran.cli.units import ram_in_bytes

    if v == "-1":
        return -1
    try:
        return ram_in_bytes(v)
    except ValueError as e:
        raise InvalidArgument(f'invalid argument "{v}" for "{flag}" flag: {e}') from e


def parse_network_rate(v: str) -> dict[str, int]:
    """``--network-rate`` -> HostConfig.KranNetworkRate (bits/s each way; kran.network.shaping)."""
    from kran.network.shaping import parse

    try:
        return parse(v)
    except ValueError as e:
        raise InvalidArgument(f'invalid argument "{v}" for "--network-rate" flag: {e}') from None


def _env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument(f"open {path}: {(e.strerror or str(e)).lower()}") from e
    out = []
    import os

    for line in lines:
        s = line.lstrip()
        if not s or s.startswith("#"):
            continue
        k, sep, v = s.partition("=")
        if not k:
            raise InvalidArgument(f"invalid environment variable: {line}")
        if " " in k:
            raise InvalidArgument(f"variable '{k}' contains whitespaces")
        if sep:
            out.append(f"{k}={v}")
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def _env(values: list[str]) -> list[str]:
    import os

    out = []
    for v in values:
        k, sep, _ = v.partition("=")
        if not k:
            raise InvalidArgument(f"invalid environment variable: {v}")
        if sep:
            out.append(v)
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def parse_restart(s: str) -> dict[str, Any]:
    name, _, n = (s or "no").partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy {name}")
    if n and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        count = int(n) if n else 0
    except ValueError:
        raise InvalidArgument(f"maximum retry count must be an integer: {n}") from None
    return {"Name": name if name != "no" else "no", "MaximumRetryCount": count}


def parse_ulimit(s: str) -> dict[str, Any]:
    from kran.engine.spec import RLIMITS

    name, sep, vals = s.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {s}")
    if name not in RLIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    soft, _, hard = vals.partition(":")
    try:
        si = int(soft)
        hi = int(hard) if hard else si
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {s}") from None
    if si > hi:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {si} > {hi}")
    return {"Name": name, "Soft": si, "Hard": hi}


def parse_volume(spec: str) -> tuple[str, str, str]:
    """``-v [SOURCE:]DEST[:MODE]`` -> (source, dest, mode); docker's rules for the pieces."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dest, mode = "", parts[0], ""
    elif len(parts) == 2:
        if parts[1] and (parts[1] in ("ro", "rw", "z", "Z") or "," in parts[1]) and parts[0].startswith("/"):
            src, dest, mode = "", parts[0], parts[1]
        else:
            src, dest, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dest, mode = parts
    else:
        raise InvalidArgument(f"invalid spec: {spec}: too many colons")
    if not dest:
        raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{'bind' if src.startswith('/') else 'volume'}\": "
                              f"invalid mount path: '{dest}' mount path must be absolute")
    for m in mode.split(",") if mode else []:
        if m not in ("ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate"):
            raise InvalidArgument(f"invalid mode: {mode}")
    if src and not src.startswith("/") and not _VOLNAME.match(src):
        raise InvalidArgument(
            f'create {src}: "{src}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )
    return src, dest, mode


_MOUNT_KEYS = {
    "type": "Type", "source": "Source", "src": "Source", "target": "Target", "dst": "Target",
    "destination": "Target", "readonly": "ReadOnly", "ro": "ReadOnly", "bind-propagation": "Propagation",
    "tmpfs-size": "TmpfsSize", "tmpfs-mode": "TmpfsMode", "volume-nocopy": "NoCopy", "volume-label": "Label",
    "volume-driver": "Driver", "volume-opt": "DriverOpt", "consistency": "Consistency",
}


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=...,src=...,dst=...`` -> docker's mount.Mount (HostConfig.Mounts item)."""
    import csv

    fields = next(csv.reader([spec])) if spec else []
    m: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmp: dict[str, Any] = {}
    for f in fields:
        k, sep, v = f.partition("=")
        key = _MOUNT_KEYS.get(k.strip().lower())
        if key is None:
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{k}' in '{f}'")
        if key in ("ReadOnly", "NoCopy"):
            if not sep:
                v = "true"
            if v.lower() not in ("1", "true", "0", "false"):
                raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid value for {k}: {v}")
            if key == "ReadOnly":
                m["ReadOnly"] = v.lower() in ("1", "true")
            else:
                vol["NoCopy"] = v.lower() in ("1", "true")
            continue
        if not sep:
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid field '{f}' must be a key=value pair")
        if key == "Type":
            m["Type"] = v.lower()
        elif key in ("Source", "Target", "Consistency"):
            m[key] = v
        elif key == "Propagation":
            bind["Propagation"] = v
        elif key == "TmpfsSize":
            tmp["SizeBytes"] = _bytes(v, "tmpfs-size")
        elif key == "TmpfsMode":
            tmp["Mode"] = int(v, 8)
        elif key == "Label":
            lk, _, lv = v.partition("=")
            vol.setdefault("Labels", {})[lk] = lv
        elif key == "DriverOpt":
            ok, _, ov = v.partition("=")
            vol.setdefault("DriverConfig", {"Name": "local"}).setdefault("Options", {})[ok] = ov
    if m["Type"] not in ("volume", "bind", "tmpfs"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid mount type \"{m['Type']}\"")
    if not m.get("Target"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    if bind:
        if m["Type"] != "bind":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'bind-*' options with mount type '{m['Type']}'")
        m["BindOptions"] = bind
    if vol:
        if m["Type"] != "volume":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'volume-*' options with mount type '{m['Type']}'")
        m["VolumeOptions"] = vol
    if tmp:
        if m["Type"] != "tmpfs":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'tmpfs-*' options with mount type '{m['Type']}'")
        m["TmpfsOptions"] = tmp
    return m


# -- networking: -p/--expose/--network/--dns/--add-host -------------------------------------------
# Docker's semantics: the port grammar is go-connections' nat.ParsePortSpec, the flag validators are
# docker/cli's opts (ValidateExtraHost, ValidateIPAddress, ValidateDNSSearch), the network-mode
# conflicts are the daemon's runconfig.validateNetContainerMode.


class CliError(InvalidArgument):
    """An error of the docker CLI itself (no "Error response from daemon:" prefix)."""

    from_daemon = False


class FlagError(CliError):
    """A flag value a docker flag validator refuses (printed like pflag's errors: "See '... --help'")."""

    flag_error = True


_BUILTIN_NETWORKS = ("default", "bridge", "host", "none")


def is_user_defined_network(mode: str) -> bool:
    """docker's NetworkMode.IsUserDefined: not a predefined network and not ``container:X``."""
    return mode not in _BUILTIN_NETWORKS and not mode.startswith("container:")


def _go_parse_uint16(s: str) -> int:
    """strconv.ParseUint(s, 10, 16), with Go's error text."""
    if not s or not s.isascii() or not s.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{s}": invalid syntax')
    n = int(s)
    if n > 65535:
        raise ValueError(f'strconv.ParseUint: parsing "{s}": value out of range')
    return n


def parse_port_range(ports: str) -> tuple[int, int]:
    """nat.ParsePortRange: ``8000`` or ``8000-9000`` -> (start, end); ValueError with docker's text."""
    if ports == "":
        raise ValueError("empty string specified for ports")
    if "-" not in ports:
        n = _go_parse_uint16(ports)
        return n, n
    parts = ports.split("-")
    start = _go_parse_uint16(parts[0])
    end = _go_parse_uint16(parts[1])
    if end < start:
        raise ValueError(f"invalid range specified for port: {ports}")
    return start, end


def split_proto_port(raw: str) -> tuple[str, str]:
    """nat.SplitProtoPort: ``80/udp`` -> ("udp", "80"); no proto -> "tcp"; no port -> ("", "")."""
    port, _, proto = raw.partition("/")
    if port == "":
        return "", ""
    return proto or "tcp", port


def _valid_ip(s: str) -> bool:
    """Go's net.ParseIP accepts plain IPv4/IPv6 literals (no zone, no leading-zero octets)."""
    import ipaddress

    if "%" in s:
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_port_spec(raw: str) -> list[tuple[str, dict[str, str]]]:
    """nat.ParsePortSpec: ``[ip:][hostPort:]containerPort[/proto]`` -> [("80/tcp", {"HostIp", "HostPort"})].

    A container-port range maps one to one onto an equally long host-port range; a single
    container port with a host-port range keeps the range ("8080-8090") for the engine to pick from.
    An empty HostPort means "any free port".
    """
    ip, host_port, container_port = _split_parts(raw)
    proto, container_port = split_proto_port(container_port)
    if container_port == "":
        raise CliError(f"no port specified: {raw}<empty>")
    proto = proto.lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise CliError(f"invalid proto: {proto}")
    if ip.startswith("["):
        # net.SplitHostPort(ip + ":"): "[::1]" -> "::1"
        if not ip.endswith("]") or "[" in ip[1:] or "]" in ip[:-1]:
            raise CliError(f"invalid IP address {ip}: address {ip}:: missing ']' in address"
                           if not ip.endswith("]") else f"invalid IP address {ip}: address {ip}:: unexpected '[' in address")
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise CliError(f"invalid IP address: {ip}")
    try:
        start, end = parse_port_range(container_port)
    except ValueError:
        raise CliError(f"invalid containerPort: {container_port}") from None
    hstart = hend = 0
    if host_port:
        try:
            hstart, hend = parse_port_range(host_port)
        except ValueError:
            raise CliError(f"invalid hostPort: {host_port}") from None
        if end - start != hend - hstart and end != start:
            raise CliError(f"invalid ranges specified for container and host Ports: {container_port} and {host_port}")
    count = end - start + 1
    out = []
    for i in range(count):
        hp = ""
        if host_port:
            hp = str(hstart + i)
            if count == 1 and hstart != hend:
                hp += f"-{hend}"
        out.append((f"{start + i}/{proto}", {"HostIp": ip, "HostPort": hp}))
    return out


def convert_publish_long_syntax(spec: str) -> str:
    """docker/cli's convertToStandardNotation: ``target=80,published=8080,protocol=udp`` -> ``8080:80/udp``."""
    if "=" not in spec:
        return spec
    params = {"protocol": "tcp"}
    for param in spec.split(","):
        k, sep, v = param.partition("=")
        if not sep or not k:
            raise CliError(f"invalid publish opts format (should be name=value but got '{param}')")
        params[k] = v
    if "target" not in params:
        raise CliError("missing required 'target' field in publish opts")
    return f"{params.get('published', '')}:{params['target']}/{params['protocol']}"


def parse_ports(publish: list[str], expose: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """``-p`` and ``--expose`` -> (Config.ExposedPorts, HostConfig.PortBindings); published ports are exposed too."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish:
        for port, binding in parse_port_spec(convert_publish_long_syntax(spec)):
            exposed.setdefault(port, {})
            bindings.setdefault(port, []).append(binding)
    for e in expose:
        if ":" in e:
            raise CliError(f"invalid port format for --expose: {e}")
        proto, port = split_proto_port(e)
        try:
            start, end = parse_port_range(port)
        except ValueError as err:
            raise CliError(f"invalid range format for --expose: {e}, error: {err}") from None
        for n in range(start, end + 1):
            exposed.setdefault(f"{n}/{proto}", {})
    return exposed, bindings


def parse_add_host(val: str) -> str:
    """opts.ValidateExtraHost: ``host:ip``, ``host=ip``, ``host=[v6]`` or ``host:host-gateway`` -> ``host:ip``."""
    k, sep, v = val.partition("=")
    if not sep:
        k, sep, v = val.partition(":")  # split on the first ":" so IPv6 addresses survive
    if not sep or not k or ":" in k:
        raise FlagError(f'invalid argument "{val}" for "--add-host" flag: bad format for add-host: "{val}"')
    if v != "host-gateway":
        if len(v) > 2 and v[0] == "[" and v[-1] == "]":
            v = v[1:-1]
        if not _valid_ip(v.strip()):
            raise FlagError(f'invalid argument "{val}" for "--add-host" flag: invalid IP address in add-host: "{v}"')
    return f"{k}:{v}"


def parse_dns(val: str) -> str:
    """opts.ValidateIPAddress for ``--dns``: the address in canonical form."""
    import ipaddress

    s = val.strip()
    if not _valid_ip(s):
        raise FlagError(f'invalid argument "{val}" for "--dns" flag: IP address is not correctly formatted: {val}')
    return str(ipaddress.ip_address(s))


_DOMAIN = re.compile(r"^(:?(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))"
                     r"(:?\.(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])))*)\.?\s*$")


def parse_dns_search(val: str) -> str:
    """opts.ValidateDNSSearch: a domain name, or ``.`` for none."""
    v = val.strip(" ")
    if v == ".":
        return v
    m = _DOMAIN.match(v)
    if not m or len(m.group(1)) > 255:
        raise FlagError(f'invalid argument "{val}" for "--dns-search" flag: {v} is not a valid domain')
    return v


_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$")


def _check_mac(mac: str) -> None:
    if not _MAC.match(mac):
        raise CliError(f"{mac} is not a valid mac address")


def parse_network_opt(val: str) -> dict[str, Any]:
    """One ``--network`` value: ``NAME`` or docker's advanced ``name=N,alias=A,ip=IP,mac-address=M,driver-opt=K=V``."""
    if "=" not in val or val.startswith("container:"):
        return {"Target": val, "Aliases": [], "IPv4Address": "", "MacAddress": "", "DriverOpts": {}}
    import csv

    n: dict[str, Any] = {"Target": "", "Aliases": [], "IPv4Address": "", "MacAddress": "", "DriverOpts": {}}
    for field in next(csv.reader([val])):
        k, sep, v = field.partition("=")
        k = k.strip().lower()
        if not sep:
            raise FlagError(f'invalid argument "{val}" for "--network" flag: invalid field {field} must be a key=value pair')
        if k == "name":
            n["Target"] = v
        elif k == "alias":
            n["Aliases"].append(v)
        elif k == "ip":
            n["IPv4Address"] = v
        elif k == "mac-address":
            n["MacAddress"] = v
        elif k == "driver-opt":
            dk, dsep, dv = v.partition("=")
            if not dsep:
                raise FlagError(f'invalid argument "{val}" for "--network" flag: invalid key value pair format in driver options')
            n["DriverOpts"][dk.strip().lower()] = dv.strip()
        else:
            raise FlagError(f'invalid argument "{val}" for "--network" flag: invalid field key {k}')
    return n


def parse_networks(networks: list[str], aliases: list[str], ip: str | None, mac: str | None) -> tuple[str, dict[str, Any]]:
    """docker/cli's parseNetworkOpts -> (HostConfig.NetworkMode, NetworkingConfig.EndpointsConfig).

    ``--network-alias``, ``--ip`` and ``--mac-address`` apply to the first network.  As in docker,
    a single network without endpoint settings sends no endpoint (the daemon creates it anyway).
    """
    from kran.errors import InvalidArgument as DaemonError

    atts = [parse_network_opt(v) for v in networks] or [parse_network_opt("default")]
    first = atts[0]
    if aliases:
        if first["Aliases"]:
            raise CliError("conflicting options: cannot specify both --network-alias and per-network alias")
        first["Aliases"] = list(aliases)
    if ip:
        if first["IPv4Address"]:
            raise CliError("conflicting options: cannot specify both --ip and per-network IPv4 address")
        first["IPv4Address"] = ip
    if mac:
        if first["MacAddress"]:
            raise CliError("conflicting options: cannot specify both --mac-address and per-network MAC address")
        first["MacAddress"] = mac
    endpoints: dict[str, Any] = {}
    user, builtin = False, False
    for i, n in enumerate(atts):
        target = n["Target"]
        if not target.strip():
            raise CliError("no name set for network")
        if target.startswith("container:") and not target[len("container:"):]:
            raise DaemonError("Invalid network mode: invalid container format container:<name|id>")
        if is_user_defined_network(target):
            user = True
        else:
            builtin = True
            # the daemon's runconfig errors (ErrUnsupportedNetworkAndAlias / ...AndIP)
            if n["Aliases"]:
                raise DaemonError("network-scoped alias is supported only for containers in user defined networks")
            if n["IPv4Address"]:
                raise DaemonError("user specified IP address is supported on user defined networks only")
        ep: dict[str, Any] = {}
        if n["Aliases"]:
            ep["Aliases"] = n["Aliases"]
        if n["DriverOpts"]:
            ep["DriverOpts"] = n["DriverOpts"]
        if n["IPv4Address"]:
            addr = n["IPv4Address"]
            if not _valid_ip(addr) or ":" in addr:
                raise CliError(f"invalid IPv4 address: {addr}")
            ep["IPAMConfig"] = {"IPv4Address": addr}
        if n["MacAddress"]:
            _check_mac(n["MacAddress"])
            ep["MacAddress"] = n["MacAddress"]
        if target in endpoints:
            raise DaemonError(f'network "{target}" is specified multiple times')
        if i == 0 and len(atts) == 1 and not ep:
            continue
        endpoints[target] = ep
    if user and builtin:
        raise DaemonError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
    return first["Target"], endpoints


def validate_network_mode(config: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """The daemon's checks of the network mode against other options (runconfig.validateNetContainerMode
    and the warnings of verifyContainerSettings): raises InvalidArgument, returns the warnings."""
    mode = host.get("NetworkMode") or "default"
    if mode.startswith("container:"):
        if config.get("Hostname"):
            raise InvalidArgument("conflicting options: hostname and the network mode")
        if host.get("Dns"):
            raise InvalidArgument("conflicting options: dns and the network mode")
        if host.get("ExtraHosts"):
            raise InvalidArgument("conflicting options: custom host-to-IP mapping and the network mode")
    if (mode.startswith("container:") or mode == "host") and config.get("MacAddress"):
        raise InvalidArgument("conflicting options: mac-address and the network mode")
    if mode.startswith("container:"):
        if host.get("PortBindings") or host.get("PublishAllPorts"):
            raise InvalidArgument("conflicting options: port publishing and the container type network mode")
        if config.get("ExposedPorts"):
            raise InvalidArgument("conflicting options: port exposing and the container type network mode")
    warnings = []
    if mode == "host" and host.get("PortBindings"):
        warnings.append("Published ports are discarded when using host network mode")
    return warnings


def go_duration(s: str, flag: str) -> int:
    """Go's time.ParseDuration (``1m30s``, ``500ms``, ``2h``) -> nanoseconds."""
    import re

    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if s == "0":
        return 0
    if not parts or "".join(a + u for a, u in parts) != s:
        raise InvalidArgument(f'invalid argument "{s}" for "--{flag}" flag: time: invalid duration "{s}"')
    return int(sum(float(a) * units[u] for a, u in parts))


def blkio_flags(opts: Any) -> dict[str, Any]:
    """--blkio-weight, --blkio-weight-device, --device-{read,write}-{bps,iops} -> HostConfig's
    Blkio* keys (docker/cli's validators, its pflag-style errors)."""
    from kran.engine.blkio import from_flags

    try:
        return from_flags(opts)
    except ValueError as e:
        flag, val, msg = e.args
        raise FlagError(f'invalid argument "{val}" for "{flag}" flag: {msg}') from None


def _healthcheck(opts: Any) -> dict[str, Any] | None:
    """docker's --health-* flags -> Config.Healthcheck (``NONE`` for --no-healthcheck)."""
    timing = {k: getattr(opts, k.replace("-", "_"), None) for k in
              ("health-interval", "health-timeout", "health-start-period", "health-start-interval")}
    if opts.no_healthcheck:
        if opts.health_cmd or any(timing.values()) or opts.health_retries:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not (opts.health_cmd or any(timing.values()) or opts.health_retries):
        return None
    hc: dict[str, Any] = {"Test": ["CMD-SHELL", opts.health_cmd]} if opts.health_cmd else {}
    for flag, key in (("health-interval", "Interval"), ("health-timeout", "Timeout"),
                      ("health-start-period", "StartPeriod"), ("health-start-interval", "StartInterval")):
        if timing[flag]:
            ns = go_duration(timing[flag], flag)
            if ns < 0:
                raise InvalidArgument(f"--{flag} cannot be negative")
            hc[key] = ns
    if opts.health_retries:
        if opts.health_retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        hc["Retries"] = opts.health_retries
    return hc


def build_networking(opts: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The network flags -> (Config fields, HostConfig fields, NetworkingConfig or None)."""
    add_hosts = [parse_add_host(h) for h in opts.add_host]
    dns = [parse_dns(d) for d in opts.dns]
    dns_search = [parse_dns_search(d) for d in opts.dns_search]
    exposed, bindings = parse_ports(opts.publish, opts.expose)
    mode, endpoints = parse_networks(list(opts.network) + list(opts.net), list(opts.network_alias) + list(opts.net_alias),
                                     opts.ip or None, opts.mac_address or None)
    config: dict[str, Any] = {}
    if exposed:
        config["ExposedPorts"] = exposed
    if opts.mac_address:
        config["MacAddress"] = opts.mac_address
    host: dict[str, Any] = {
        "NetworkMode": mode,
        "PortBindings": bindings,
        "PublishAllPorts": bool(opts.publish_all),
        "Dns": dns,
        "DnsOptions": list(opts.dns_option) + list(opts.dns_opt),
        "DnsSearch": dns_search,
        "ExtraHosts": add_hosts or None,
    }
    return config, host, ({"EndpointsConfig": endpoints} if endpoints else None)


def build(opts: Any, image: str, cmd: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Docker's parse(): flags + IMAGE + COMMAND -> (Config, HostConfig)."""
    config, host, _networking, _warnings = build_run(opts, image, cmd)
    return config, host


def build_run(opts: Any, image: str, cmd: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, list[str]]:
    """Docker's parse() and the daemon's checks: flags + IMAGE + COMMAND ->
    (Config, HostConfig, NetworkingConfig or None, warnings for stderr)."""
    env = []
    for f in opts.env_file:
        env += _env_file(f)
    env += _env(opts.env)
    labels = {}
    for lab in opts.label:
        k, _, v = lab.partition("=")
        labels[k] = v
    config: dict[str, Any] = {
        "Hostname": opts.hostname or "",
        "Domainname": opts.domainname or "",
        "User": opts.user or "",
        "AttachStdin": bool(opts.interactive and not opts.opts.get("detach")),
        "AttachStdout": not opts.opts.get("detach"),
        "AttachStderr": not opts.opts.get("detach"),
        "Tty": bool(opts.tty),
        "OpenStdin": bool(opts.interactive),
        "StdinOnce": bool(opts.interactive and not opts.opts.get("detach")),
        "Env": env,
        "Cmd": cmd or None,
        "Image": image,
        "WorkingDir": opts.workdir or "",
        "Labels": labels,
    }
    if opts.entrypoint is not None:
        config["Entrypoint"] = shlex.split(opts.entrypoint) if opts.entrypoint else []
    health = _healthcheck(opts)
    if health is not None:
        config["Healthcheck"] = health
    if opts.health_on_failure is not None:
        config["HealthcheckOnFailureAction"] = opts.health_on_failure  # checked by kran.engine.healthcheck
    if opts.stop_signal:
        config["StopSignal"] = opts.stop_signal
    if opts.stop_timeout is not None:
        config["StopTimeout"] = opts.stop_timeout
    log_opts = {}
    for o in opts.log_opt:
        k, sep, v = o.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid key-value pair format in log-opt: {o}")
        if k not in ("max-size", "max-file", "compress", "labels", "env", "tag", "mode"):
            raise InvalidArgument(f"unknown log opt '{k}' for json-file log driver")
        log_opts[k] = v
    if opts.log_driver not in (None, "", "json-file"):
        raise InvalidArgument(f'logging driver "{opts.log_driver}" is not supported; use json-file')
    tmpfs = {}
    for t in opts.tmpfs:
        path, _, o = t.partition(":")
        tmpfs[path] = o
    cpus = 0
    if opts.cpus:
        try:
            cpus = int(round(float(opts.cpus) * 1e9))
        except ValueError:
            raise InvalidArgument(f'invalid argument "{opts.cpus}" for "--cpus" flag: failed to parse {opts.cpus} as a rational number') from None
    sysctls = {}
    for s in opts.sysctl:
        k, sep, v = s.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid value {s}: sysctl must be key=value")
        sysctls[k] = v
    net_config, net_host, networking = build_networking(opts)
    config.update(net_config)
    if opts.network_rate is not None:
        net_host["KranNetworkRate"] = parse_network_rate(opts.network_rate)
    if opts.pull not in ("always", "missing", "never"):
        raise InvalidArgument(f'invalid pull option: \'{opts.pull}\': must be one of "always", "missing" or "never"')
    binds = []
    volumes: dict[str, Any] = {}
    for v in opts.volume:
        src, dest, _mode = parse_volume(v)
        if src:
            binds.append(v)
        else:
            volumes[dest] = {}
    if volumes:
        config["Volumes"] = volumes
    host: dict[str, Any] = {
        "Binds": binds or None,
        "Mounts": [parse_mount(m) for m in opts.mount] or None,
        "VolumesFrom": opts.volumes_from or None,
        "AutoRemove": bool(opts.opts.get("rm")),
        "RestartPolicy": parse_restart(opts.restart),
        "Memory": _bytes(opts.memory, "--memory") if opts.memory else 0,
        "MemorySwap": _bytes(opts.memory_swap, "--memory-swap") if opts.memory_swap else 0,
        "MemoryReservation": _bytes(opts.memory_reservation, "--memory-reservation") if opts.memory_reservation else 0,
        "NanoCpus": cpus,
        "CpuShares": opts.cpu_shares or 0,
        "CpuPeriod": opts.cpu_period or 0,
        "CpuQuota": opts.cpu_quota or 0,
        "CpusetCpus": opts.cpuset_cpus or "",
        "CpusetMems": opts.cpuset_mems or "",
        "PidsLimit": opts.pids_limit,
        "ReadonlyRootfs": bool(opts.read_only),
        "Tmpfs": tmpfs or None,
        "Init": bool(opts.init) or None,
        "CapAdd": opts.cap_add or None,
        "CapDrop": opts.cap_drop or None,
        "Privileged": bool(opts.privileged),
        "SecurityOpt": opts.security_opt or None,
        "Ulimits": [parse_ulimit(u) for u in opts.ulimit] or None,
        "LogConfig": {"Type": "json-file", "Config": log_opts},
        "Runtime": opts.runtime or "",
        "CgroupParent": opts.cgroup_parent or "",
        "ShmSize": _bytes(opts.shm_size, "--shm-size") if opts.shm_size else 67108864,
        "Sysctls": sysctls or None,
    }
    host.update(net_host)
    host.update(blkio_flags(opts))
    for key, on in (("KranRestartFresh", opts.restart_fresh), ("KranLockdown", opts.lockdown)):
        if on:
            host[key] = True
    if opts.profile:
        host["KranProfile"] = opts.profile
    host.update(policy_flags(opts))
    warnings = validate_network_mode(config, host)
    return config, host, networking, warnings


def policy_flags(opts: Any) -> dict[str, Any]:
    """--schedule, --max-lifetime, --recreate-every -> HostConfig KranSchedule/KranMaxLifetime/
    KranRecreateEvery (ns); checked by the engine (kran.engine.schedule), which normalises."""
    out: dict[str, Any] = {}
    if opts.schedule is not None:
        out["KranSchedule"] = opts.schedule
    for flag, key in (("max-lifetime", "KranMaxLifetime"), ("recreate-every", "KranRecreateEvery")):
        v = getattr(opts, flag.replace("-", "_"))
        if v is not None:
            ns = go_duration(v, flag)
            if ns <= 0:
                raise InvalidArgument(f'invalid argument "{v}" for "--{flag}" flag: must be positive')
            out[key] = ns
    return out
