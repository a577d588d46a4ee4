"""Settings: the only place that reads the environment, so every other module is testable.

Precedence: command-line flag, then environment variable, then default.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from llm_firewall.domain import FORWARDED_HEADERS

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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_float(env, name, float(default)))


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Request hygiene limits, applied before any inspection."""

    max_body_bytes: int = 4 * 1024 * 1024  # counted after Content-Encoding is decoded
    max_json_depth: int = 64
    max_messages: int = 2048
    # Requests and answers with more text than this are inspected on a worker thread (see gateway),
    # and at most `max_queued_inspections` requests may wait for it or be on it: more are refused
    # with a 503 rather than held in memory behind a long queue.
    thread_inspect_chars: int = 64 * 1024
    max_queued_inspections: int = 8


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds: connect, time to the first response byte, and idle gaps."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str | None = None  # None: the embedded demo upstream
    upstream_api_key: str | None = None  # set: replaces the client's Authorization upstream
    data_dir: Path | None = None
    rules_dir: Path | None = None
    policy: str = "production"
    policies_dir: Path | None = None
    admin_token: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    forwarded_header: str = FORWARDED_HEADERS[0]  # the one forwarding header believed from them
    redis_url: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
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

    @property
    def uses_demo_upstream(self) -> bool:
        return self.upstream_url is None

    @property
    def client_keys_checked(self) -> bool:
        """True when a client's API key reaches a real upstream, which refuses a made-up one.
        Otherwise (the firewall's own key replaces it, or the demo model) any string passes,
        so a client's key is no identity it cannot choose."""
        return self.upstream_url is not None and self.upstream_api_key is None

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from environment variables (`OPENAI_*` for the upstream, `LLM_FIREWALL_*`)."""
    env = os.environ if env is None else env
    upstream = env.get("LLM_FIREWALL_UPSTREAM") or env.get("OPENAI_BASE_URL") or None
    data_dir = env.get("LLM_FIREWALL_DATA_DIR")
    rules_dir = env.get("LLM_FIREWALL_RULES_DIR")
    policies_dir = env.get("LLM_FIREWALL_POLICIES_DIR")
    origins = tuple(o.strip() for o in env.get("LLM_FIREWALL_WS_ORIGINS", "").split(",") if o.strip())
    hooks = tuple(u.strip() for u in env.get("LLM_FIREWALL_WEBHOOKS", "").split(",") if u.strip())
    dl, dt = Limits(), Timeouts()
    return Settings(
        host=env.get("LLM_FIREWALL_HOST", "127.0.0.1"),
        port=_int(env, "LLM_FIREWALL_PORT", 8080),
        upstream_url=upstream.rstrip("/") if upstream else None,
        upstream_api_key=env.get("OPENAI_API_KEY") or None,
        data_dir=Path(data_dir) if data_dir else None,
        rules_dir=Path(rules_dir) if rules_dir else None,
        policy=env.get("LLM_FIREWALL_POLICY", "production"),
        policies_dir=Path(policies_dir) if policies_dir else None,
        admin_token=env.get("LLM_FIREWALL_ADMIN_TOKEN") or None,
        trusted_proxies=_parse_networks(env.get("LLM_FIREWALL_TRUSTED_PROXIES", ""), "LLM_FIREWALL_TRUSTED_PROXIES"),
        forwarded_header=_forwarded_header(env.get("LLM_FIREWALL_FORWARDED_HEADER", "")),
        redis_url=env.get("LLM_FIREWALL_REDIS_URL") or None,
        log_format=env.get("LLM_FIREWALL_LOG_FORMAT", "text"),
        log_level=env.get("LLM_FIREWALL_LOG_LEVEL", "INFO").upper(),
        limits=Limits(
            max_body_bytes=_int(env, "LLM_FIREWALL_MAX_BODY_BYTES", dl.max_body_bytes),
            max_json_depth=_int(env, "LLM_FIREWALL_MAX_JSON_DEPTH", dl.max_json_depth),
            max_messages=_int(env, "LLM_FIREWALL_MAX_MESSAGES", dl.max_messages),
            thread_inspect_chars=_int(env, "LLM_FIREWALL_THREAD_INSPECT_CHARS", dl.thread_inspect_chars),
            max_queued_inspections=_int(env, "LLM_FIREWALL_MAX_QUEUED_INSPECTIONS", dl.max_queued_inspections),
        ),
        timeouts=Timeouts(
            connect=_float(env, "LLM_FIREWALL_CONNECT_TIMEOUT", dt.connect),
            first_byte=_float(env, "LLM_FIREWALL_FIRST_BYTE_TIMEOUT", dt.first_byte),
            idle=_float(env, "LLM_FIREWALL_IDLE_TIMEOUT", dt.idle),
        ),
        stream_window_chars=_int(env, "LLM_FIREWALL_STREAM_WINDOW", 128),
        verdict_cache_chars=_int(env, "LLM_FIREWALL_VERDICT_CACHE_CHARS", 4_000_000),
        ws_allowed_origins=origins,
        analyst_base_url=env.get("LLM_FIREWALL_ANALYST_BASE_URL") or None,
        analyst_api_key=env.get("LLM_FIREWALL_ANALYST_API_KEY") or None,
        analyst_model=env.get("LLM_FIREWALL_ANALYST_MODEL", "gpt-4o-mini"),
        webhook_urls=hooks,
        circuit_failures=_int(env, "LLM_FIREWALL_CIRCUIT_FAILURES", 5),
        circuit_reset_s=_float(env, "LLM_FIREWALL_CIRCUIT_RESET", 10.0),
        watch_logs=_watch_logs(env.get("LLM_FIREWALL_WATCH_LOGS", "")),
        replica=env.get("LLM_FIREWALL_REPLICA") or None,
    )


def _forwarded_header(raw: str) -> str:
    """LLM_FIREWALL_FORWARDED_HEADER: X-Forwarded-For (default), Forwarded or X-Real-IP."""
    name = raw.strip().lower() or FORWARDED_HEADERS[0]
    if name not in FORWARDED_HEADERS:
        raise ConfigError(f"LLM_FIREWALL_FORWARDED_HEADER: {raw!r} is not one of X-Forwarded-For, Forwarded, X-Real-IP")
    return name


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
