"""Masks credentials before any text reaches a log line, an alert, the audit trail or the page.

One module serves every sink so that a new secret shape is added in one place: `redact_secrets`
for a text, `redact_value` for a JSON-like record, `excerpt` for the snippet an alert keeps.
An excerpt is cut from the redacted text, never redacted after the cut: a key cut in two by the
excerpt's edge no longer looks like a key, and two excerpts of one text would rebuild it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import re2

MASK = "[REDACTED]"

# Names whose assigned value is a credential: `password=…`, `"secret": "…"`, `DB_PASSWORD: …`.
_SECRET_NAME = (r"(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
                r"|private[_-]?key|credentials?)")
# Query parameters that carry a credential in a URL (`?token=`, `&sig=`, `X-Amz-Signature=`).
_SECRET_PARAM = r"(?:[\w.-]*?(?:token|key|secret|passw(?:or)?d|pwd|pass|auth|sig|signature|credential|session|code))"

# A key pasted with one space inside or cut over two lines: the next piece is part of it when it
# holds a digit (a word of prose rarely does), so neither half is left in clear.
_SPLIT = r"(?:(?: |\r?\n)[A-Za-z0-9_-]{0,80}\d[A-Za-z0-9_-]{0,80})?"

# Each shape may name a label kept in clear before the mask (`(?P<L>…)`) and a tail kept after it
# (`(?P<T>…)`); the shapes are searched as one RE2 alternation (linear time: Python's `re` took
# 2 s over a 4 MB text for these shapes, RE2 20 ms).
_SHAPES: tuple[str, ...] = (
    # PEM private keys: the whole body, also when the END line is missing (cut off).
    r"-----BEGIN\s[A-Z0-9\s]{0,24}PRIVATE\s{1,3}KEY(?:\s{1,3}BLOCK)?\s{0,3}-----(?s:.)*?"
    r"(?:-----END\s[A-Z0-9\s]{0,24}PRIVATE\s{1,3}KEY(?:\s{1,3}BLOCK)?\s{0,3}-----|\z)",
    # A bare DER key body (PKCS#1/#8 in base64 starts with a long-form SEQUENCE: "MII").
    r"\bMII[A-Za-z0-9+/]{40,}={0,2}(?:\s*\n[A-Za-z0-9+/]{16,}={0,2})*",
    # Credentials in a URL: the whole userinfo, secret-looking query parameters, webhook paths.
    r"(?i)(?P<L>\b[a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+(?P<T>@)",
    rf"(?i)(?P<L>[?&;]{_SECRET_PARAM}=)[^&#\s\"'<>]+",
    r"(?i)(?P<L>(?:hooks\.slack\.com/(?:services|workflows|triggers)|discord(?:app)?\.com/api/webhooks"
    r"|webhook\.office\.com/webhookb2)/)[^\s\"'<>?#]+",
    # Authorization schemes.
    r"(?i)(?P<L>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}",
    # Provider key shapes.
    # OpenAI (sk-proj-, sk-svcacct-), Anthropic (sk-ant-); split early, the rest holds a digit.
    rf"\bsk-[A-Za-z0-9_-]{{12,}}{_SPLIT}|\bsk-[A-Za-z0-9_-]{{6,11}}(?: |\r?\n)[A-Za-z0-9_-]{{0,80}}\d[A-Za-z0-9_-]*",
    rf"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{{12,}}{_SPLIT}|\bwhsec_[A-Za-z0-9]{{16,}}",  # Stripe
    # AWS key ids, also with one space or line break inside.
    r"(?i)\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)(?:[A-Z0-9]{16}|[A-Z0-9]{4,15}(?: |\r?\n)[A-Z0-9]{1,12})\b",
    rf"\bgh[pousr]_[A-Za-z0-9]{{20,}}{_SPLIT}|\bgithub_pat_[A-Za-z0-9_]{{20,}}{_SPLIT}|\bglpat-[A-Za-z0-9_-]{{20,}}{_SPLIT}",
    rf"\bxox[abposr]-[A-Za-z0-9-]{{10,}}{_SPLIT}|\bxapp-[A-Za-z0-9-]{{10,}}",  # Slack
    rf"\bAIza[0-9A-Za-z_-]{{30,}}{_SPLIT}|\bya29\.[0-9A-Za-z_-]{{20,}}|\bGOCSPX-[0-9A-Za-z_-]{{20,}}",  # Google
    rf"\bhf_[A-Za-z0-9]{{30,}}{_SPLIT}|\bnpm_[A-Za-z0-9]{{30,}}|\bSG\.[\w-]{{16,}}\.[\w-]{{16,}}{_SPLIT}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    # Password-like assignments: `password=…`, `passwd: …`, `"secret": "…"`, `api_key='…'`.
    rf"(?i)(?P<L>{_SECRET_NAME}\\?[\"']?\s*[:=]\s*\\?[\"'])[^\"'\\\n]{{3,}}",
    rf"(?i)(?P<L>{_SECRET_NAME}\\?[\"']?\s*[:=]\s*)[^\s,;&\"'<>\\]{{3,}}",
    # ... and in prose: "the db password is: Tr0ub4dor&3", "the passphrase was hunter2!" (without
    # a colon the value must hold a digit or a symbol inside it: "the password is wrong!" is left
    # alone).
    r"(?i)(?P<L>\b(?:passw(?:or)?d|passphrase|passcode|pwd)\s{1,3}(?:is|was|will\s+be)\s{0,3}:\s{0,3}[\"'`]?)"
    r"[^\s\"'`<>]{3,}",
    r"(?i)(?P<L>\b(?:passw(?:or)?d|passphrase|passcode|pwd)\s{1,3}(?:is|was|will\s+be)\s{1,3}[\"'`]?)"
    r"[^\s\"'`<>]{0,64}(?:\d|[!@#$%^&*+=?~][^\s\"'`<>.,;:])[^\s\"'`<>]{0,64}",
)


def _compile(shapes: tuple[str, ...]) -> tuple[Any, list[tuple[int, int]]]:
    """One RE2 alternation of every shape, and per shape the numbers of its label and tail groups."""
    parts, groups, n = [], [], 0
    for i, shape in enumerate(shapes):
        label = tail = 0
        if "(?P<L>" in shape:
            n += 1
            label = n
        if "(?P<T>" in shape:
            n += 1
            tail = n
        parts.append("(?:" + shape.replace("(?P<L>", f"(?P<L{i}>").replace("(?P<T>", f"(?P<T{i}>") + ")")
        groups.append((label, tail))
    opts = re2.Options()
    opts.max_mem = 64 << 20
    return re2.compile("|".join(parts), opts), [g for g in groups if any(g)]


_SECRETS, _GROUPS = _compile(_SHAPES)

Span = tuple[int, int, int]  # (start, end of the label kept in clear, end)


def _find_spans(text: str) -> tuple[Span, ...]:
    """Every credential in `text`, sorted and merged: (start, label end, end)."""
    found: list[Span] = []
    for m in _SECRETS.finditer(text):
        start, label, end = m.start(), m.start(), m.end()
        for lab, tail in _GROUPS:
            if lab and m.start(lab) >= 0:
                label = m.end(lab)
            if tail and m.start(tail) >= 0:
                end = m.start(tail)
        found.append((start, label, end))
    if not found:
        return ()
    found.sort()
    merged: list[Span] = [found[0]]
    for start, label, end in found[1:]:
        s0, l0, e0 = merged[-1]
        if start < e0:
            merged[-1] = (s0, l0, max(e0, end))
        else:
            merged.append((start, label, end))
    return tuple(merged)


# The engine cuts several excerpts from one text in a row; two texts kept (up to 4 MB each) is enough.
secret_spans = lru_cache(maxsize=2)(_find_spans)


def _render(text: str, spans: tuple[Span, ...], lo: int, hi: int) -> str:
    """`text[lo:hi]` as it reads once every credential is masked (a cut one included)."""
    out: list[str] = []
    pos = lo
    for start, label, end in spans:
        if end <= lo or start >= hi:
            continue
        if start > pos:
            out.append(text[pos:start])
        if label > pos:
            out.append(text[max(start, pos):min(label, hi)])
        if label < hi:
            out.append(MASK)
        pos = max(pos, end)
    if pos < hi:
        out.append(text[pos:hi])
    return "".join(out)


def redact_secrets(text: str) -> str:
    """Return `text` with every credential-shaped substring replaced by a mask."""
    if not text:
        return text
    spans = _find_spans(text)
    return _render(text, spans, 0, len(text)) if spans else text


def excerpt(text: str, span: tuple[int, int], *, context: int = 40, limit: int = 200,
            hide: bool = False) -> str:
    """The matched text with `context` characters either side, cut from the redacted text.

    `hide` masks the match itself (personal data); a match longer than `limit` is shortened.
    """
    start, end = span
    lo, hi = max(0, start - context), min(len(text), end + context)
    spans = secret_spans(text)
    if not spans:
        middle = MASK if hide else text[start:end] if end - start <= limit else text[start:start + limit] + "…"
        return text[lo:start] + middle + text[end:hi]
    if hide:
        return _render(text, spans, lo, start) + MASK + _render(text, spans, end, hi)
    if end - start > limit:
        return _render(text, spans, lo, start + limit) + "…" + _render(text, spans, end, hi)
    return _render(text, spans, lo, hi)


# --- records and URLs --------------------------------------------------------------------------

_SENSITIVE_KEYS = frozenset({
    "authorization", "proxy_authorization", "api_key", "apikey", "x_api_key", "password", "passwd",
    "secret", "client_secret", "token", "access_token", "refresh_token", "id_token", "cookie",
    "set_cookie", "private_key", "admin_token", "guard_token",
})
# Fields holding a URL that may carry credentials anywhere in it (a webhook's path is its token).
_URL_KEYS = frozenset({"target", "url", "webhook", "webhook_url", "upstream", "upstream_url"})


def mask_url(url: str) -> str:
    """A loggable name for a URL: scheme and host plus a short hash, never userinfo, path or query."""
    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme or '?'}://{parts.hostname or '?'}{port}/…#{digest}"


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with credentials masked: by key name, and inside every string.

    URL-valued fields (a webhook target) are shown as `mask_url` gives them."""
    if _depth > 32:
        return "[TRUNCATED]"
    if isinstance(value, str):
        return redact_secrets(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        return redact_secrets(value.decode("utf-8", "replace"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = redact_secrets(str(k))
            name = key.lower().replace("-", "_")
            if name in _SENSITIVE_KEYS and v not in (None, "", [], {}):
                out[key] = MASK
            elif name in _URL_KEYS and isinstance(v, str) and "://" in v:
                out[key] = mask_url(v)
            else:
                out[key] = redact_value(v, _depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(v, _depth + 1) for v in value]
    return redact_secrets(str(value))


# --- API key fingerprints ----------------------------------------------------------------------

# Keys are written by clients: a longer one is hashed on every use rather than kept, so the
# cache holds at most 4,096 short keys, not 4,096 keys of up to 8 KB each.
CACHED_KEY_CHARS = 256


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name for an API key (for limits, sanctions, audit).

    Clients send the same key with every request, so each one is hashed once."""
    if len(api_key) <= CACHED_KEY_CHARS:
        return _cached_fingerprint(api_key)
    return _fingerprint(api_key)


def _fingerprint(api_key: str) -> str:
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"key:{digest[:16]}"


_cached_fingerprint = lru_cache(maxsize=4096)(_fingerprint)
