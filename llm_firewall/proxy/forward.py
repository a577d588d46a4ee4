"""Talking to the upstream: header hygiene, credentials, transport, timeouts.

The firewall only ever calls the one configured upstream, with a request target decided by
`proxy.target.resolve` (the only place that reads the client's target).
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # in CPython, not in typeshed

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from llm_firewall.config import Timeouts, UpstreamTransport
from llm_firewall.enforce.identity import CREDENTIAL_HEADERS, credential_header
from llm_firewall.proxy.http1 import Http1Pool, Http1Response, UnsafeRequestError
from llm_firewall.proxy.target import BASE_PATH

# RFC 9110 §7.6.1 hop-by-hop headers, plus those the firewall recomputes itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    "content-encoding",
})
# Request headers that describe the client to us and must not be replayed upstream.
_CLIENT_ONLY = frozenset({"x-forwarded-for", "forwarded", "x-real-ip", "x-llm-firewall-admin",
                          "cookie", "accept-encoding", "x-security-mode", "origin",
                          "x-request-id",  # replaced by the id the firewall logs
                          # the firewall is the proxy here: a client does not describe the hop
                          "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "via",
                          # a method is what the firewall inspected, not what a header says
                          "x-http-method-override", "x-http-method", "x-method-override"})
# With the firewall's own credential, the client may not choose whose account it is spent on or
# add a credential of its own beside it: OpenAI's, Azure's (`api-key`, API Management's
# subscription key), Google's and Anthropic's headers.
_ACCOUNT = frozenset({"authorization", "openai-organization", "openai-project", "api-key", "x-api-key",
                      "ocp-apim-subscription-key", "x-goog-api-key", "x-goog-user-project",
                      "anthropic-api-key"})


# One set lookup per header on every request instead of three.
_DROPPED = HOP_BY_HOP | _CLIENT_ONLY
_DROPPED_WITH_KEY = _DROPPED | _ACCOUNT  # replaced by the firewall's own credential

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


def upstream_headers(incoming: Mapping[str, str], *, authorization: str | None,
                     request_id: str) -> list[tuple[str, str]]:
    """Headers to send upstream: end-to-end ones only, with our credential when configured
    (`authorization` is the whole header value, see `Upstream.authorization`)."""
    connection = incoming.get("Connection")
    if authorization:
        dropped = _DROPPED_WITH_KEY
    else:  # the client's own credential goes through: only the one it is known by
        own = credential_header(incoming)
        dropped = _DROPPED | {name for name in CREDENTIAL_HEADERS if name != own}
    if connection:
        dropped = dropped | {t.strip().lower() for t in connection.split(",") if t.strip()}
    out = [(name, value) for name, value in incoming.items() if name.lower() not in dropped]
    if authorization:
        out.append(("Authorization", authorization))
    out.append(("X-Request-ID", request_id))
    return out


def upstream_authorization(base_url: str, api_key: str | None) -> str | None:
    """The Authorization the firewall sends upstream: its API key as a bearer token, or the
    user and password written in the upstream URL as Basic credentials; both at once is a
    configuration error (which one was meant?)."""
    parts = urlsplit(base_url)
    if parts.username is None and parts.password is None:
        return f"Bearer {api_key}" if api_key else None
    if api_key:
        raise ValueError("the upstream URL carries credentials and an upstream API key is set too: keep one")
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def without_credentials(url: str) -> str:
    """`url` with any `user:password@` removed: for connecting, Host headers and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _ssl_context(transport: UpstreamTransport) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(transport.ca_file) if transport.ca_file else None)
    if transport.client_cert is not None:
        context.load_cert_chain(str(transport.client_cert),
                                str(transport.client_key) if transport.client_key else None)
    return context


def proxy_for(base_url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy that `HTTPS_PROXY`/`HTTP_PROXY` name for this upstream, unless `NO_PROXY`
    exempts its host (the standard library's reading of `NO_PROXY`, as curl and httpx read it)."""
    parts = urlsplit(base_url)
    proxy = proxies.get(parts.scheme)
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if proxy_bypass_environment(host, {"no": proxies.get("no", "")}):
        return None
    return proxy


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

    def __init__(self, base_url: str, timeouts: Timeouts, *, api_key: str | None = None,
                 transport: UpstreamTransport | None = None, max_answer_bytes: int = 64 << 20) -> None:
        self.authorization = upstream_authorization(base_url, api_key)
        self.base_url = without_credentials(base_url.rstrip("/"))
        self.timeouts = timeouts
        self.transport = transport or UpstreamTransport()
        self.base_path = urlsplit(self.base_url).path  # request targets are written below it
        if not BASE_PATH.fullmatch(self.base_path):
            raise ValueError(f"the upstream URL's path {self.base_path!r} must be plain segments (no escapes)")
        self.max_answer_bytes = max_answer_bytes
        self._pool: Http1Pool | None = None

    async def start(self) -> None:
        secure = self.base_url.startswith("https:")
        self._pool = Http1Pool(self.base_url, connect_timeout=self.timeouts.connect,
                               first_byte_timeout=self.timeouts.first_byte, idle_timeout=self.timeouts.idle,
                               ssl_context=_ssl_context(self.transport) if secure else None,
                               proxy=proxy_for(self.base_url, self.transport.proxies),
                               max_answer_bytes=self.max_answer_bytes)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None) -> Http1Response:
        """Send and wait for the response head; classify failures for the caller.

        The pool enforces the timeouts (connect, first byte, then every idle gap while the body is
        read): reads of the returned answer raise TimeoutError when the upstream goes quiet."""
        assert self._pool is not None, "Upstream.start() was not awaited"
        try:
            return await self._pool.request(method, target, headers, body)
        except UnsafeRequestError as exc:
            raise UpstreamError(400, "invalid_request_header", str(exc), False) from None
        except TimeoutError:
            raise UpstreamError(504, "upstream_timeout", "The upstream did not answer in time.", True) from None
        except OSError:
            raise UpstreamError(502, "upstream_unavailable", "The upstream could not be reached.", False) from None
        except aiohttp.ClientError:
            raise UpstreamError(502, "upstream_error", "The upstream connection failed.", True) from None
