"""Masks credentials before any text reaches a log line, an alert, the audit trail or the page.

One function serves every sink so that a new secret shape is added in one place.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

# Shapes of credentials that must never be written anywhere in clear.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{12,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    re.compile(r"(?i)\b(api[_-]?key|token|secret|password|passwd)(\s*[=:]\s*)[^\s,;&\"']{6,}"),
)

MASK = "[REDACTED]"


def redact_secrets(text: str) -> str:
    """Return `text` with every credential-shaped substring replaced by a mask."""
    if not text:
        return text
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m.group(1)} {MASK}", text)
        else:
            text = pattern.sub(MASK, text)
    return text


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
