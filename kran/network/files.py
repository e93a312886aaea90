"""A container's /etc/hosts and /etc/resolv.conf, by docker's rules (pure functions of text)."""

from __future__ import annotations

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)

EMBEDDED_DNS = "127.0.0.11"
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]


def hosts(extra: list[str], own: list[tuple[str, str]]) -> str:
    """``--add-host`` lines (host:ip) and the container's own address -> names."""
    out = [HOSTS_HEADER]
    for e in extra:
        host, sep, ip = e.partition(":") if "=" not in e else e.partition("=")
        if not sep:
            continue
        if ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        out.append(f"{ip}\t{host}\n")
    for ip, names in own:
        out.append(f"{ip}\t{names}\n")
    return "".join(out)


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """nameservers, search domains, options of a resolv.conf."""
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        w = line.split()
        if not w or w[0].startswith(("#", ";")):
            continue
        if w[0] == "nameserver" and len(w) > 1:
            ns.append(w[1])
        elif w[0] in ("search", "domain"):
            search = w[1:]
        elif w[0] == "options":
            opts += w[1:]
    return ns, search, opts


def _render(ns: list[str], search: list[str], opts: list[str], comment: str = "") -> str:
    out = []
    if comment:
        out.append(comment)
    out += [f"nameserver {n}" for n in ns]
    if search:
        out.append("search " + " ".join(search))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join(out) + "\n"


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def resolv_conf(host_text: str, *, dns: list[str], search: list[str], options: list[str], embedded: bool) -> str:
    """docker's rules.

    Default bridge: the host's file without loopback resolvers (Google's if none is left), with
    --dns/--dns-search/--dns-option replacing their parts.  User networks: the embedded resolver
    at 127.0.0.11 (which forwards to --dns or the host's resolvers), ``ndots:0`` like docker.
    """
    h_ns, h_search, h_opts = parse_resolv(host_text)
    s = search or h_search
    if search == ["."]:
        s = []
    o = options or h_opts
    if embedded:
        ext = dns or h_ns
        if "ndots:0" not in o and not any(x.startswith("ndots:") for x in o):
            o = [*o, "ndots:0"]
        return _render([EMBEDDED_DNS], s, o, f"# ExtServers: [{' '.join(ext)}]")
    ns = dns or [n for n in h_ns if not is_loopback(n)] or list(FALLBACK_DNS)
    return _render(ns, s, o)


def upstreams(host_text: str, dns: list[str]) -> list[str]:
    """What the embedded DNS forwards to: --dns, else the host's resolvers (loopback ones too: the
    forwarder runs in the host's namespace)."""
    return list(dns) or parse_resolv(host_text)[0] or list(FALLBACK_DNS)
