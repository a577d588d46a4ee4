"""Talking to the upstream: target hygiene, header hygiene, timeouts.

The firewall only ever calls the one configured upstream. A request target that could steer it
elsewhere (absolute-form, `//host`, dot segments in any encoding) is refused before routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from llm_firewall.config import Timeouts
from llm_firewall.proxy.http1 import Http1Pool, Http1Response

ALLOWED_METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "OPTIONS"})

# RFC 9110 §7.6.1 hop-by-hop headers, plus those the firewall recomputes itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    "content-encoding",
})
# Request headers that describe the client to us and must not be replayed upstream.
_CLIENT_ONLY = frozenset({"x-forwarded-for", "forwarded", "x-real-ip", "x-llm-firewall-admin",
                          "cookie", "accept-encoding", "x-security-mode", "origin",
                          "x-request-id"})  # replaced by the id the firewall logs


# One set lookup per header on every request instead of three.
_DROPPED = HOP_BY_HOP | _CLIENT_ONLY
_DROPPED_WITH_KEY = _DROPPED | {"authorization"}  # replaced by the firewall's own credential

# Upstream answer headers a client may see, each with the shape its value must have. Any other
# header, or a value of another shape, is dropped: header values are not inspected text, and an
# upstream can put anything there (keys, internal host names, cookies, its account's organisation
# and project ids). Kept: what the SDKs act on (rate limits, retry hints) and the processing time.
# Content-Type is set by the gateway from the answer's inspected shape; the request id is the
# firewall's own.
_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,6})?"
_DURATION = r"(?:[0-9]{1,9}(?:\.[0-9]{1,6})?(?:ms|s|m|h))+"
_HTTP_DATE = r"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
_RELAYED = {
    "openai-processing-ms": re.compile(_NUMBER),
    "openai-version": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "retry-after": re.compile(f"[0-9]{{1,9}}|{_HTTP_DATE}"),
    "retry-after-ms": re.compile(_NUMBER),
    "x-should-retry": re.compile("true|false"),
}
_RATE_LIMIT_NAME = re.compile(r"x-ratelimit-[a-z0-9_-]{1,48}")
_RATE_LIMIT_VALUE = re.compile(f"{_NUMBER}|{_DURATION}")


class TargetError(ValueError):
    """A request target the firewall will not forward."""


def check_target(raw_path: str) -> None:
    """Refuse absolute-form targets, `//host` paths, and dot segments, plain or percent-encoded."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise TargetError("absolute-form or relative request targets are not accepted")
    if path.startswith("//"):
        raise TargetError("a request path may not start with //")
    lowered = path.lower()
    if "\\" in path or "%2e" in lowered or "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
        raise TargetError("encoded dots, slashes or NUL bytes are not accepted in the path")
    for segment in path.split("/"):
        if segment in (".", ".."):
            raise TargetError("dot segments are not accepted in the path")


def upstream_headers(incoming: Mapping[str, str], *, api_key: str | None, request_id: str) -> list[tuple[str, str]]:
    """Headers to send upstream: end-to-end ones only, with our credential when configured."""
    connection = incoming.get("Connection")
    dropped = _DROPPED_WITH_KEY if api_key else _DROPPED
    if connection:
        dropped = dropped | {t.strip().lower() for t in connection.split(",") if t.strip()}
    out = [(name, value) for name, value in incoming.items() if name.lower() not in dropped]
    if api_key:
        out.append(("Authorization", f"Bearer {api_key}"))
    out.append(("X-Request-ID", request_id))
    return out


def relayed_header(name: str, value: str) -> bool:
    """Whether an upstream answer header reaches the client (see `_RELAYED`)."""
    name = name.lower()
    shape = _RELAYED.get(name)
    if shape is None:
        if not _RATE_LIMIT_NAME.fullmatch(name):
            return False
        shape = _RATE_LIMIT_VALUE
    return shape.fullmatch(value.strip()) is not None


def downstream_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Headers to return to the client: the allowlisted ones only (the body is re-framed by us)."""
    return CIMultiDict([(k, v) for k, v in upstream.items() if relayed_header(k, v)])


@dataclass(slots=True)
class UpstreamError(Exception):
    """The upstream could not be reached or did not answer in time."""

    status: int
    code: str
    message: str
    reached: bool  # True when the request may have reached the model (never retried)


class Upstream:
    """The one configured upstream, over a pool of keep-alive HTTP/1.1 connections."""

    def __init__(self, base_url: str, timeouts: Timeouts) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self._prefix = urlsplit(self.base_url).path
        self._pool: Http1Pool | None = None

    async def start(self) -> None:
        self._pool = Http1Pool(self.base_url, connect_timeout=self.timeouts.connect,
                               first_byte_timeout=self.timeouts.first_byte, idle_timeout=self.timeouts.idle)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def url_for(self, v1_tail: str, query: str) -> str:
        """The request target (path and query) for an endpoint under the upstream's base path."""
        return f"{self._prefix}/{v1_tail}" + (f"?{query}" if query else "")

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None) -> Http1Response:
        """Send and wait for the response head; classify failures for the caller.

        The pool enforces the timeouts (connect, first byte, then every idle gap while the body is
        read): reads of the returned answer raise TimeoutError when the upstream goes quiet."""
        assert self._pool is not None, "Upstream.start() was not awaited"
        try:
            return await self._pool.request(method, target, headers, body)
        except TimeoutError:
            raise UpstreamError(504, "upstream_timeout", "The upstream did not answer in time.", True) from None
        except OSError:
            raise UpstreamError(502, "upstream_unavailable", "The upstream could not be reached.", False) from None
        except aiohttp.ClientError:
            raise UpstreamError(502, "upstream_error", "The upstream connection failed.", True) from None
