"""Settings: the only place that reads the environment, so every other module is testable.

Precedence: command-line flag, then environment variable, then default.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llm_firewall.domain import FORWARDED_HEADERS
from llm_firewall.enforce.identity import DEFAULT_IPV6_PREFIX, MIN_IPV6_PREFIX

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable or flag."""


def _parse_networks(raw: str, source: str) -> tuple[Network, ...]:
    nets: list[Network] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{source}: {part!r} is not an IP address or CIDR range ({exc})") from None
    return tuple(nets)


def _float(env: Mapping[str, str], name: str, default: float, zero_ok: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name}: must be {'zero or more' if zero_ok else 'positive'}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, zero_ok: bool = False) -> int:
    return int(_float(env, name, float(default), zero_ok))


def _dirs(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    """Directories separated as in PATH; each must exist (a typo must not drop local rules)."""
    out = []
    for part in env.get(name, "").split(os.pathsep):
        if part.strip():
            path = Path(part.strip())
            if not path.is_dir():
                raise ConfigError(f"{name}: not a directory: {part.strip()}")
            out.append(path)
    return tuple(out)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Request hygiene limits, applied before any inspection."""

    max_body_bytes: int = 4 * 1024 * 1024  # counted after Content-Encoding is decoded
    max_answer_bytes: int = 64 * 1024 * 1024  # an upstream answer, decoded (a stream's whole length)
    max_json_depth: int = 64
    max_messages: int = 2048
    # Distinct choices, tool calls (per choice) and output items in one answer or stream: more
    # is refused (502) or ends the stream with an error event. Each is inspected on its own and
    # joined with the others, so their number, not only the answer's size, sets the work.
    max_answer_parts: int = 128
    # Requests and answers with more text than this are inspected on a worker thread (see gateway),
    # and at most `max_queued_inspections` requests may wait for it or be on it: more are refused
    # with a 503 rather than held in memory behind a long queue.
    thread_inspect_chars: int = 8 * 1024  # ~40 ms at most on the loop, for the costliest text
    max_queued_inspections: int = 8
    # Open client connections; at the cap a new one closes the oldest idle one, or is refused
    # when none is idle (see server.py). Lowered at start-up to fit the process's file limit.
    max_connections: int = 4096


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds: connect, time to the first response byte, and idle gaps."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Client-side bounds in seconds, so slow or silent clients cannot hold connections forever.

    `header`: a request head must be complete this long after its first byte (or after the
    connection opened); `body`: a request body must be complete this long after its head;
    `keepalive`: an idle connection between requests is closed after this; `stream`: a streamed
    answer is ended with an error event after this total time, however steadily it flows.
    """

    header: float = 10.0
    body: float = 60.0
    keepalive: float = 30.0
    stream: float = 600.0


@dataclass(frozen=True, slots=True)
class UpstreamTransport:
    """How the firewall reaches its upstream: a proxy from the usual variables, and TLS material.

    `proxies` holds what `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` said (lower-case names win,
    as with curl); `forward.Upstream` picks the one that applies to the upstream's host, with
    the standard library's reading of `NO_PROXY`. The analyst's openai client reads the same
    variables itself, so both reach the outside the same way."""

    proxies: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None  # a private CA for the upstream's certificate
    client_cert: Path | None = None  # mutual TLS
    client_key: Path | None = None


def _proxies(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for scheme in ("https", "http", "no"):
        value = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
        if value:
            out[scheme] = value
    return out


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"{name}: no such file: {raw}")
    return path


def _transport(env: Mapping[str, str]) -> UpstreamTransport:
    cert = _existing_file(env, "LLM_FIREWALL_UPSTREAM_CLIENT_CERT")
    key = _existing_file(env, "LLM_FIREWALL_UPSTREAM_CLIENT_KEY")
    if key is not None and cert is None:
        raise ConfigError("LLM_FIREWALL_UPSTREAM_CLIENT_KEY is set without LLM_FIREWALL_UPSTREAM_CLIENT_CERT")
    return UpstreamTransport(proxies=_proxies(env), ca_file=_existing_file(env, "LLM_FIREWALL_UPSTREAM_CA_FILE"),
                             client_cert=cert, client_key=key)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str | None = None  # None: the embedded demo upstream
    upstream_api_key: str | None = None  # set: replaces the client's Authorization upstream
    upstream_transport: UpstreamTransport = field(default_factory=UpstreamTransport)
    data_dir: Path | None = None
    rules_dir: Path | None = None
    local_rules_dirs: tuple[Path, ...] = ()  # layered over the rules: add, replace or disable by id
    policy: str = "production"
    policies_dir: Path | None = None
    admin_token: str | None = None
    guard_token: str | None = None  # for `POST /api/guard` alone (the admin token works there too)
    trusted_proxies: tuple[Network, ...] = ()
    forwarded_header: str = FORWARDED_HEADERS[0]  # the one forwarding header believed from them
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX  # IPv6 clients are counted and sanctioned by this network
    redis_url: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    decision_log: bool = True  # one JSON line per alert, sanction, refusal, admin action (decision_log.py)
    access_log: bool = False  # one line per request (aiohttp's access log)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    client_timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    stream_window_chars: int = 128
    verdict_cache_chars: int = 4_000_000  # text held by the verdict cache; 0 turns it off
    ws_allowed_origins: tuple[str, ...] = ()
    analyst_base_url: str | None = None
    analyst_api_key: str | None = None
    analyst_model: str = "gpt-4o-mini"
    webhook_urls: tuple[str, ...] = ()
    circuit_failures: int = 5
    circuit_reset_s: float = 10.0
    watch_logs: tuple[dict[str, object], ...] = ()  # log files the SOC tails, like fail2ban
    replica: str | None = None  # name shown in alerts when several replicas run
    workers: int = 1  # processes serving one port (serve --workers; see workers.py)
    reuse_port: bool = False  # set for each worker: several processes bind the same port
    journal_dir: Path | None = None  # the store's local journal; None: data_dir

    @property
    def uses_demo_upstream(self) -> bool:
        return self.upstream_url is None

    @property
    def client_keys_checked(self) -> bool:
        """True when a client's API key reaches a real upstream, which refuses a made-up one.
        Otherwise (the firewall's own key replaces it, or the demo model) any string passes,
        so a client's key is no identity it cannot choose."""
        return self.upstream_url is not None and self.upstream_api_key is None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_workers(value: str) -> int:
    """A worker count: a positive number, or `auto` for one per core this process may use."""
    if value.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"workers must be a positive number or 'auto', got {value!r}")
    return count


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from environment variables (`LLM_FIREWALL_*`; the upstream falls back to
    `OPENAI_BASE_URL` / `OPENAI_API_KEY`, the variables clients use, when its own are unset)."""
    env = os.environ if env is None else env
    upstream = (env.get("LLM_FIREWALL_UPSTREAM_URL") or env.get("LLM_FIREWALL_UPSTREAM")
                or env.get("OPENAI_BASE_URL") or None)
    data_dir = env.get("LLM_FIREWALL_DATA_DIR")
    rules_dir = env.get("LLM_FIREWALL_RULES_DIR")
    policies_dir = env.get("LLM_FIREWALL_POLICIES_DIR")
    origins = tuple(o.strip() for o in env.get("LLM_FIREWALL_WS_ORIGINS", "").split(",") if o.strip())
    hooks = tuple(u.strip() for u in env.get("LLM_FIREWALL_WEBHOOKS", "").split(",") if u.strip())
    dl, dt, dc = Limits(), Timeouts(), ClientTimeouts()
    return Settings(
        host=env.get("LLM_FIREWALL_HOST", "127.0.0.1"),
        port=_int(env, "LLM_FIREWALL_PORT", 8080),
        upstream_url=upstream.rstrip("/") if upstream else None,
        upstream_api_key=env.get("LLM_FIREWALL_UPSTREAM_API_KEY") or env.get("OPENAI_API_KEY") or None,
        upstream_transport=_transport(env),
        data_dir=Path(data_dir) if data_dir else None,
        rules_dir=Path(rules_dir) if rules_dir else None,
        local_rules_dirs=_dirs(env, "LLM_FIREWALL_RULES_DIRS"),
        policy=env.get("LLM_FIREWALL_POLICY", "production"),
        policies_dir=Path(policies_dir) if policies_dir else None,
        admin_token=env.get("LLM_FIREWALL_ADMIN_TOKEN") or None,
        guard_token=env.get("LLM_FIREWALL_GUARD_TOKEN") or None,
        trusted_proxies=_parse_networks(env.get("LLM_FIREWALL_TRUSTED_PROXIES", ""), "LLM_FIREWALL_TRUSTED_PROXIES"),
        forwarded_header=_forwarded_header(env.get("LLM_FIREWALL_FORWARDED_HEADER", "")),
        ipv6_prefix=_ipv6_prefix(env),
        redis_url=env.get("LLM_FIREWALL_REDIS_URL") or None,
        log_format=env.get("LLM_FIREWALL_LOG_FORMAT", "text"),
        log_level=env.get("LLM_FIREWALL_LOG_LEVEL", "INFO").upper(),
        decision_log=_bool(env, "LLM_FIREWALL_DECISION_LOG", True),
        access_log=_bool(env, "LLM_FIREWALL_ACCESS_LOG", False),
        limits=Limits(
            max_body_bytes=_int(env, "LLM_FIREWALL_MAX_BODY_BYTES", dl.max_body_bytes),
            max_answer_bytes=_int(env, "LLM_FIREWALL_MAX_ANSWER_BYTES", dl.max_answer_bytes),
            max_json_depth=_int(env, "LLM_FIREWALL_MAX_JSON_DEPTH", dl.max_json_depth),
            max_messages=_int(env, "LLM_FIREWALL_MAX_MESSAGES", dl.max_messages),
            max_answer_parts=_int(env, "LLM_FIREWALL_MAX_ANSWER_PARTS", dl.max_answer_parts),
            thread_inspect_chars=_int(env, "LLM_FIREWALL_THREAD_INSPECT_CHARS", dl.thread_inspect_chars),
            max_queued_inspections=_int(env, "LLM_FIREWALL_MAX_QUEUED_INSPECTIONS", dl.max_queued_inspections),
            max_connections=_int(env, "LLM_FIREWALL_MAX_CONNECTIONS", dl.max_connections),
        ),
        timeouts=Timeouts(
            connect=_float(env, "LLM_FIREWALL_CONNECT_TIMEOUT", dt.connect),
            first_byte=_float(env, "LLM_FIREWALL_FIRST_BYTE_TIMEOUT", dt.first_byte),
            idle=_float(env, "LLM_FIREWALL_IDLE_TIMEOUT", dt.idle),
        ),
        client_timeouts=ClientTimeouts(
            header=_float(env, "LLM_FIREWALL_HEADER_TIMEOUT", dc.header),
            body=_float(env, "LLM_FIREWALL_BODY_TIMEOUT", dc.body),
            keepalive=_float(env, "LLM_FIREWALL_KEEPALIVE_TIMEOUT", dc.keepalive),
            stream=_float(env, "LLM_FIREWALL_STREAM_MAX_SECONDS", dc.stream),
        ),
        stream_window_chars=_int(env, "LLM_FIREWALL_STREAM_WINDOW", 128),
        verdict_cache_chars=_int(env, "LLM_FIREWALL_VERDICT_CACHE_CHARS", 4_000_000, zero_ok=True),
        ws_allowed_origins=origins,
        analyst_base_url=env.get("LLM_FIREWALL_ANALYST_BASE_URL") or None,
        analyst_api_key=env.get("LLM_FIREWALL_ANALYST_API_KEY") or None,
        analyst_model=env.get("LLM_FIREWALL_ANALYST_MODEL", "gpt-4o-mini"),
        webhook_urls=hooks,
        circuit_failures=_int(env, "LLM_FIREWALL_CIRCUIT_FAILURES", 5),
        circuit_reset_s=_float(env, "LLM_FIREWALL_CIRCUIT_RESET", 10.0),
        watch_logs=_watch_logs(env.get("LLM_FIREWALL_WATCH_LOGS", "")),
        replica=env.get("LLM_FIREWALL_REPLICA") or None,
        workers=parse_workers(env.get("LLM_FIREWALL_WORKERS", "1")),
        reuse_port=_bool(env, "LLM_FIREWALL_REUSE_PORT", False),
        journal_dir=Path(env["LLM_FIREWALL_JOURNAL_DIR"]) if env.get("LLM_FIREWALL_JOURNAL_DIR") else None,
    )


def _forwarded_header(raw: str) -> str:
    """LLM_FIREWALL_FORWARDED_HEADER: X-Forwarded-For (default), Forwarded or X-Real-IP."""
    name = raw.strip().lower() or FORWARDED_HEADERS[0]
    if name not in FORWARDED_HEADERS:
        raise ConfigError(f"LLM_FIREWALL_FORWARDED_HEADER: {raw!r} is not one of X-Forwarded-For, Forwarded, X-Real-IP")
    return name


def _ipv6_prefix(env: Mapping[str, str]) -> int:
    """LLM_FIREWALL_IPV6_PREFIX: the network (in bits) one IPv6 client is counted by (64)."""
    bits = _int(env, "LLM_FIREWALL_IPV6_PREFIX", DEFAULT_IPV6_PREFIX)
    if not MIN_IPV6_PREFIX <= bits <= 128:
        raise ConfigError(f"LLM_FIREWALL_IPV6_PREFIX: {bits} is not between {MIN_IPV6_PREFIX} and 128")
    return bits


def _watch_logs(raw: str) -> tuple[dict[str, object], ...]:
    """LLM_FIREWALL_WATCH_LOGS: a JSON list of {"path", "format": json|combined|common, "ban"}."""
    if not raw.strip():
        return ()
    try:
        specs = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"LLM_FIREWALL_WATCH_LOGS: not JSON ({exc})") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("path"), str) for s in specs):
        raise ConfigError("LLM_FIREWALL_WATCH_LOGS: expected a JSON list of objects with a 'path'")
    return tuple(specs)


def upstream_loops_back(upstream_url: str, host: str, port: int) -> bool:
    """Whether `upstream_url` names this very firewall (its own port on one of its addresses).

    Pointed at itself (say `OPENAI_BASE_URL` set for clients and read by the server too), the
    firewall would forward every request to itself until its own rate limit answered. An
    address is this machine's when a socket can bind to it; a name is resolved first."""
    parts = urlsplit(upstream_url)
    target_port = parts.port or (443 if parts.scheme == "https" else 80)
    if target_port != port or not parts.hostname:
        return False
    try:
        infos = socket.getaddrinfo(parts.hostname, target_port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # unresolvable now: not provably a loop; connecting will say what is wrong
    listen_any = host in ("0.0.0.0", "::", "")
    for family, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if listen_any:
            if addr.is_loopback or _is_local(family, ip):
                return True
        elif str(addr) == host or (host == "localhost" and addr.is_loopback):
            return True
    return False


def _is_local(family: int, address: str) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True
