"""The request target: the one place that decides which endpoint a request is for and what
target is written upstream.

Why one pure function over the RAW target (never aiohttp's decoded path or query): a decoded
`%3f`, `%0d%0a` or `%2e%2e` means one thing to the router and another to the upstream, and
every such gap is a way around inspection. So a /v1 target is accepted only in a form that has
a single reading: no percent-escape in the path at all, no dot or empty segment, no `;`, no
trailing slash, ASCII only; endpoint names match exactly and case-sensitively; the query is
forwarded byte for byte after validation (never decoded and re-encoded). Whatever is accepted is
written upstream unchanged below the upstream's base path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

MAX_TARGET = 8192  # bytes; aiohttp's request line limit is the same order (8190)
V1 = "/v1/"

Body = Literal["shaped", "walk", "none"]  # inspected by its known shape / by a walk of every string / no body

# One path segment under /v1: unreserved characters plus ':' and '@' (model ids such as
# "ft:gpt-4o:org::abc"). No '%', ';', '\\', '?', '#', spaces, controls or non-ASCII.
# "." and ".." are not segments but dot segments (RFC 3986 §5.2.4): refused.
_SEGMENT = r"(?!\.\.?(?:[/?]|$))[A-Za-z0-9\-._~:@]+"
_V1_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
# A query: the same characters plus the sub-delimiters, '/', '?', '&', and percent-escapes other
# than '%25' (double encoding) and encoded controls. Each alternative starts with a different
# character, so matching is linear (no backtracking) however long the target.
_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,;=:@/?&]|%(?!25|[01][0-9A-Fa-f]|7[Ff])[0-9A-Fa-f]{2})*")
# The firewall's own query parameters (admin filters, the page) may hold a literal '%'.
_LOCAL_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,;=:@/?&]|%(?![01][0-9A-Fa-f]|7[Ff])[0-9A-Fa-f]{2})*")
# Paths the firewall serves itself (page, admin API): percent-escapes allowed (ids in paths) but
# not those that change the path's structure or hide one escape in another.
_LOCAL_PATH = re.compile(
    r"(?:/(?:[A-Za-z0-9\-._~:@!$'()*+,=]|%(?!25|2[EeFf]|3[FfBb]|23|5[Cc]|[01][0-9A-Fa-f]|7[Ff])[0-9A-Fa-f]{2})+)+|/")
# What the upstream client will write as a request target: the base path joined to an accepted
# target. Checked again at the socket (http1), so nothing else can ever be written there.
UPSTREAM_TARGET = re.compile(rf"(?:/{_SEGMENT})+(?:\?{_QUERY.pattern})?")
BASE_PATH = re.compile(rf"(?:/{_SEGMENT})*")


class TargetRefused(ValueError):
    """A target the firewall will not forward; `status` and `code` shape the OpenAI error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # "chat/completions", "models/{id}", or a policy's passthrough pattern
    methods: frozenset[str]
    body: Body
    query: frozenset[str] | None = None  # parameter names accepted; None: any valid query
    known: bool = True  # one of the firewall's own endpoints (metrics label, body shape)


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: Endpoint
    path: str  # under /v1/, exactly as received, e.g. "models/gpt-4o"
    upstream: str  # the request target written upstream: base path, path, raw query


_POST = frozenset({"POST"})
_READ = frozenset({"GET", "HEAD"})
_AZURE = frozenset({"api-version"})  # the one query parameter OpenAI-compatible POST APIs take
KNOWN: Mapping[str, Endpoint] = {
    name: Endpoint(name, _POST, "shaped", _AZURE)
    for name in ("chat/completions", "completions", "embeddings", "responses")
} | {"models": Endpoint("models", _READ, "none")}
MODEL = Endpoint("models/{id}", _READ, "none")
PASSTHROUGH_METHODS = ("GET", "HEAD", "POST", "DELETE")
PLACEHOLDER = "{id}"


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Endpoints a policy lets through besides the known ones: "METHOD path" entries, where a
    path segment `{id}` matches one segment. A POST's JSON body is inspected by a walk of every
    string in it (`body="walk"`); other methods carry no body."""

    patterns: tuple[tuple[str, tuple[str, ...], Endpoint], ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> Passthrough:
        out = []
        for entry in entries:
            method, path = parse_passthrough(entry)
            ep = Endpoint(path, frozenset({method}), "walk" if method == "POST" else "none", known=False)
            out.append((method, tuple(path.split("/")), ep))
        return cls(tuple(out))

    def match(self, method: str, segments: list[str]) -> tuple[Endpoint | None, bool]:
        """(the endpoint for this method, whether the path is listed for any method)."""
        listed = False
        for m, pattern, ep in self.patterns:
            if len(pattern) == len(segments) and all(
                    p == PLACEHOLDER or p == s for p, s in zip(pattern, segments, strict=True)):
                if m == method:
                    return ep, True
                listed = True
        return None, listed


NO_PASSTHROUGH = Passthrough()


def parse_passthrough(entry: str) -> tuple[str, str]:
    """("POST", "moderations") from "POST moderations"; ValueError saying what is wrong."""
    method, _, path = entry.strip().partition(" ")
    path = path.strip()
    if method not in PASSTHROUGH_METHODS:
        raise ValueError(f"expected 'METHOD path' with METHOD one of {', '.join(PASSTHROUGH_METHODS)}")
    if not path or not _V1_PATH.fullmatch(path.replace(PLACEHOLDER, "id")):
        raise ValueError(f"path {path!r} must be segments under /v1/ (letters, digits, -._~:@ or {PLACEHOLDER}), "
                         "with no leading or trailing '/'")
    if path in KNOWN or path.split("/")[0] == "models":
        raise ValueError(f"{path!r} is one of the firewall's own endpoints")
    return method, path


def _refuse(message: str) -> TargetRefused:
    return TargetRefused(400, "invalid_request_target", message)


def resolve(method: str, raw: str, *, base: str = "", passthrough: Passthrough = NO_PASSTHROUGH) -> Target:
    """The endpoint and upstream target for a /v1 request, from the raw request target.

    `base` is the upstream URL's path ("" or e.g. "/v1"). Raises TargetRefused (400 malformed,
    404 unknown endpoint, 405 method not allowed on it)."""
    if len(raw) > MAX_TARGET:
        raise TargetRefused(414, "request_target_too_long", f"the request target is longer than {MAX_TARGET} bytes")
    path, has_query, query = raw.partition("?")
    if not path.startswith(V1):
        raise _refuse("the request target must be a path starting with /v1/, without percent-escapes")
    tail = path[4:]
    ep = KNOWN.get(tail)  # the usual request: one dict lookup, the literal needs no further check
    if ep is None:
        if not _V1_PATH.fullmatch(tail):
            raise _refuse("the request path may hold only letters, digits and -._~:@ in non-empty segments "
                          "(no percent-escapes, ';', '\\\\', dot segments, empty segments or trailing '/')")
        segments = tail.split("/")
        listed = False
        if len(segments) == 2 and segments[0] == "models":
            ep = MODEL
        else:
            ep, listed = passthrough.match(method, segments)
        if ep is None:
            if listed:
                raise TargetRefused(405, "method_not_allowed", f"method {method} is not allowed on /v1/{tail}")
            raise TargetRefused(404, "unknown_endpoint", f"/v1/{tail} is not an endpoint this firewall forwards")
    if method not in ep.methods:
        raise TargetRefused(405, "method_not_allowed", f"method {method} is not allowed on /v1/{tail}")
    if has_query:
        check_query(query, ep.query)
    upstream = f"{base}/{tail}?{query}" if query else f"{base}/{tail}"
    return Target(ep, tail, upstream)


def check_query(query: str, names: frozenset[str] | None = None) -> None:
    """Refuse a query with anything but plain characters and harmless escapes; with `names`,
    also any parameter not among them."""
    if not _QUERY.fullmatch(query):
        raise _refuse("the query may hold only printable ASCII characters and percent-escapes "
                      "(not %25 or encoded control characters)")
    if names is not None and query:
        for pair in query.split("&"):
            if pair.partition("=")[0] not in names:
                raise TargetRefused(400, "unsupported_query_parameter",
                                    f"query parameter {pair.partition('=')[0]!r} is not accepted on this endpoint "
                                    f"(accepted: {', '.join(sorted(names))})")


def check_local(raw: str) -> None:
    """Hygiene for targets the firewall serves itself (page, admin API, health): they are never
    forwarded, but must not reach the router in a form that decodes into another path."""
    if len(raw) > MAX_TARGET:
        raise TargetRefused(414, "request_target_too_long", f"the request target is longer than {MAX_TARGET} bytes")
    path, has_query, query = raw.partition("?")
    if not _LOCAL_PATH.fullmatch(path):
        raise _refuse("the request path must be absolute, without encoded '/', '\\\\', '.', '?', '#' or '%', "
                      "control characters, ';' or empty segments")
    if "/./" in f"{path}/" or "/../" in f"{path}/":
        raise _refuse("dot segments are not accepted in the request path")
    if has_query and not _LOCAL_QUERY.fullmatch(query):
        raise _refuse("the query may hold only printable ASCII characters and percent-escapes "
                      "(not encoded control characters)")
