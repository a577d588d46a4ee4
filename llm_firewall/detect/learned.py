"""A small linear model that scores prompt attacks the rule patterns miss.

Logistic regression over hashed features of the normalised, case-folded text: character
n-grams (3-5 bytes) inside each whitespace token plus word unigrams and bigrams. Inference is
pure Python on purpose (no numpy in the package): a token's n-gram weights are summed once and
cached, so a 2 KB prompt costs a few hundred dictionary lookups. Features use CRC-32, which is
stable across processes (Python's ``hash()`` is salted). Weights are trained by
``scripts/train_learned.py`` and shipped in ``llm_firewall/data/learned_pi.json`` (weights and
hash parameters only, never corpus text).
"""

from __future__ import annotations

import array
import base64
import json
import math
import sys
import unicodedata
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from llm_firewall.domain import Finding
from llm_firewall.redact import redact_secrets

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "learned_pi.json"

RULE_ID = "ML-PI-001"
TITLE = "Learned prompt-attack detector"

# Work bounds: huge texts are scored on their head and tail only.
HEAD_TAIL_CHARS = 8192
MAX_TOKEN_BYTES = 48  # n-grams of a longer token (a base64 blob, a URL) use its first bytes only
NGRAM_SIZES = (3, 4, 5)
_CACHE_LIMIT = 50_000  # tokens
_PAIR_CACHE_LIMIT = 100_000  # word pairs (cheap to recompute from the token cache)

# Seeds separate the feature families inside one hash space.
_SEED_CHAR = 0x11
_SEED_WORD = 0x22
_SEED_SHAPE = 0x33
_BIGRAM_MUL = 0x9E3779B1

_STRIP = "\"'`.,;:!?()[]{}<>*_~|#-=+/\\"

# A prompt attack is an instruction, and an instruction needs words: a text with fewer letters
# than this (a lone backtick, "1", "*", a bare operator) is not scored. With so few features
# the length-normalised margin is dominated by one or two hashed n-grams and means nothing.
MIN_LETTERS = 4

# Roles whose text a prompt attack can arrive in (the model is not run on answers).
# Operator-authored text (system, developer, Responses API instructions) is not scored: it is
# written by the deployer, and system prompts are full of "never reveal these instructions".
SCANNED_ROLES = frozenset(
    {"user", "tool", "input", "prompt", "tool_description", "tool_call", "embedding", "function"}
)


def _basic_normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _views_normalize() -> Callable[[str], str] | None:
    try:
        from llm_firewall.detect.normalize import base_view
    except ImportError:
        return None

    def first_view(text: str) -> str:
        return base_view(text).text

    return first_view


def scorable(text: str) -> bool:
    """True when a text has enough letters for the model's score to mean anything."""
    count = 0
    for ch in text:
        if ch.isalpha():
            count += 1
            if count >= MIN_LETTERS:
                return True
    return False


def bound_text(text: str, limit: int = HEAD_TAIL_CHARS) -> str:
    """Head and tail of a huge text, so the work per text is bounded."""
    if len(text) <= 2 * limit:
        return text
    return text[:limit] + "\n" + text[-limit:]


def tokens_of(normalized: str) -> list[str]:
    return normalized.split()


def _shape(token: str) -> str:
    """Character-class outline of a token with runs collapsed ("Here!," -> "Aap")."""
    out = []
    last = ""
    for ch in token[:24]:
        cls = "a" if ch.islower() else "A" if ch.isupper() else "9" if ch.isdigit() else (
            ch if ch in _STRIP else "p")
        if cls != last:
            out.append(cls)
            last = cls
    return "".join(out[:8])


def token_features(token: str, mask: int) -> tuple[list[int], int]:
    """Hashed char n-grams (with token boundaries), the token's shape and its word hash."""
    shape = _shape(token)
    token = token.casefold()
    raw = (" " + token + " ").encode("utf-8", "surrogatepass")[: MAX_TOKEN_BYTES + 2]
    crc = zlib.crc32
    size = len(raw)
    feats = [crc(raw[i : i + n], _SEED_CHAR) & mask
             for n in NGRAM_SIZES for i in range(size - n + 1)]
    word = token.strip(_STRIP) or token
    word_hash = crc(word.encode("utf-8", "surrogatepass"), _SEED_WORD)
    feats.append(word_hash & mask)
    feats.append(crc(shape.encode(), _SEED_SHAPE) & mask)
    return feats, word_hash


def bigram_feature(prev_hash: int, word_hash: int, mask: int) -> int:
    return ((prev_hash * _BIGRAM_MUL) ^ word_hash) & mask


def features(text: str, mask: int, normalize: Callable[[str], str]) -> list[int]:
    """Every feature index of a text, with repeats (the training path; inference caches)."""
    out: list[int] = []
    prev: int | None = None
    for tok in tokens_of(normalize(bound_text(text))):
        feats, wh = token_features(tok, mask)
        out.extend(feats)
        if prev is not None:
            out.append(bigram_feature(prev, wh, mask))
        prev = wh
    return out


def pack_weights(weights: Iterable[float]) -> tuple[str, float]:
    """Quantise float weights to int16 and pack them (zlib + base64) with their scale."""
    values = list(weights)
    top = max((abs(w) for w in values), default=0.0) or 1.0
    scale = top / 32767.0
    q = array.array("h", (max(-32767, min(32767, round(w / scale))) for w in values))
    if sys.byteorder != "little":
        q.byteswap()
    return base64.b64encode(zlib.compress(q.tobytes(), 9)).decode("ascii"), scale


def unpack_weights(blob: str) -> array.array:
    q = array.array("h")
    q.frombytes(zlib.decompress(base64.b64decode(blob)))
    if sys.byteorder != "little":
        q.byteswap()
    return q


class LearnedDetector:
    """Scores a text's probability of being a prompt attack; emits ML-PI-001 findings."""

    rule_id = RULE_ID  # what a policy's rule_overrides calls this detector

    def __init__(self, weights: array.array, scale: float, bias: float, bits: int,
                 normalizer: str = "views", meta: dict | None = None) -> None:
        self._w = weights
        self._scale = scale
        self._bias = bias
        self._mask = (1 << bits) - 1
        self.bits = bits
        self.meta = meta or {}
        fn = _views_normalize() if normalizer == "views" else None
        self._normalize: Callable[[str], str] = fn or _basic_normalize
        self.normalizer = "views" if fn else "basic"
        # token -> (complex(summed quantised weights, feature count), word hash)
        self._cache: dict[str, tuple[complex, int]] = {}
        # (previous token, token) -> the token's value plus the pair's weight and count
        self._pairs: dict[tuple[str, str], complex] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LearnedDetector":
        p = Path(path) if path is not None else DEFAULT_PATH
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            weights = unpack_weights(doc["weights"])
            bits = int(doc["bits"])
            if len(weights) != 1 << bits:
                raise ValueError(f"expected {1 << bits} weights, found {len(weights)}")
            return cls(weights, float(doc["scale"]), float(doc["bias"]), bits,
                       str(doc.get("normalizer", "views")), doc.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as exc:
            raise ValueError(f"{p}: cannot load learned model ({exc})") from exc

    def _token(self, tok: str) -> tuple[complex, int]:
        """complex(summed weights, feature count) of a token's own features, and its word hash."""
        hit = self._cache.get(tok)
        if hit is None:
            feats, wh = token_features(tok, self._mask)
            hit = (complex(sum(map(self._w.__getitem__, feats)), len(feats)), wh)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[tok] = hit
        return hit

    def _steps(self, pairs: list[tuple[str, str]], vals: list[complex | None]) -> list:
        """Fill the cache misses of `margin`: a step is a token plus its pair with the previous."""
        cache, w, mask, token = self._pairs, self._w, self._mask, self._token
        if len(cache) >= _PAIR_CACHE_LIMIT:
            cache.clear()
        for i, pair in enumerate(pairs):
            if vals[i] is None:
                prev_hash = token(pair[0])[1]
                value, wh = token(pair[1])
                vals[i] = cache[pair] = value + complex(
                    w[((prev_hash * _BIGRAM_MUL) ^ wh) & mask], 1)
        return vals

    def margin(self, text: str) -> float:
        """The model's log-odds that `text` is a prompt attack.

        Features are summed per step (a token's n-grams and word plus its word pair with the
        previous token), cached as complex(weight sum, feature count) keyed by the word pair:
        a text whose word pairs were seen before costs one native `map` over the cache and
        one native `sum`, with no Python code per token.
        """
        toks = tokens_of(self._normalize(bound_text(text)))
        if not toks:
            return self._bias
        z = self._token(toks[0])[0]
        if len(toks) > 1:
            vals = list(map(self._pairs.get, zip(toks, toks[1:])))
            try:
                z += sum(vals)
            except TypeError:  # a step not seen yet
                z += sum(self._steps(list(zip(toks, toks[1:])), vals))
        return self._bias + self._scale * z.real / math.sqrt(z.imag)

    def probability(self, text: str) -> float:
        z = self.margin(text)
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def detect(self, text: str, role: str, path: str, direction: str) -> list[Finding]:
        if direction != "request" or role not in SCANNED_ROLES or not scorable(bound_text(text)):
            return []
        p = self.probability(text)
        severity = severity_for(p)
        if severity is None:
            return []
        return [
            Finding(
                rule_id=RULE_ID,
                title=TITLE,
                threat="prompt_injection",
                severity=severity,
                role=role,
                path=path,
                category="learned",
                excerpt=redact_secrets(_excerpt(text)),
                span=(0, len(text)),
            )
        ]


def severity_for(p: float) -> str | None:
    if p >= 0.98:
        return "critical"
    if p >= 0.9:
        return "high"
    if p >= 0.7:
        return "medium"
    return None


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
