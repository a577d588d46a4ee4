"""A small linear model that scores prompt attacks the rule patterns miss.

Logistic regression over hashed features of the normalised, case-folded text: character
n-grams (3-5 bytes) inside each whitespace token plus word unigrams and bigrams. Inference is
pure Python on purpose (no numpy in the package): a token's n-gram weights are summed once and
cached, so a 2 KB prompt costs a few hundred dictionary lookups. Features use CRC-32, which is
stable across processes (Python's ``hash()`` is salted). Weights are trained by
``scripts/train_learned.py`` and shipped in ``llm_firewall/data/learned_pi.json`` (weights,
hash parameters and thresholds only, never corpus text). A user's own request is judged as a
whole; data the assistant reads is judged by its most attack-like window (see ROLE_GROUPS).
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
from itertools import accumulate, islice
from operator import xor
from pathlib import Path

from llm_firewall.domain import Finding
from llm_firewall.redact import excerpt

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "learned_pi.json"

RULE_ID = "ML-PI-001"
TITLE = "Learned prompt-attack detector"

# Work bounds: huge texts are scored on their head and tail only.
HEAD_TAIL_CHARS = 8192
MAX_TOKEN_BYTES = 48  # n-grams of a longer token (a base64 blob, a URL) use its first bytes only
NGRAM_SIZES = (3, 4, 5)
_CACHE_LIMIT = 50_000  # tokens
# Longer tokens (a base64 blob, a minified line) rarely recur and are scored afresh rather than
# cached: the cache then holds at most 50,000 short tokens, not 50,000 tokens of up to 16K chars.
_CACHED_TOKEN_CHARS = 64
# A cached token's feature count rides in the low bits of its weight sum (see `margin`); a text's
# counts add up to far less than 2**32 (at most 16K characters are scored).
COUNT_BITS = 32
_COUNT_MASK = (1 << COUNT_BITS) - 1

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


def pair_parts(word_hash: int, mask: int) -> tuple[int, int]:
    """A word's share of a word pair's feature, as the pair's left and as its right word.

    A pair's feature is ((left * _BIGRAM_MUL) ^ right) & mask, which equals the xor of the two
    parts masked apart, so inference can cache each word's parts and xor them per pair."""
    return (word_hash * _BIGRAM_MUL) & mask, word_hash & mask


def bigram_feature(prev_hash: int, word_hash: int, mask: int) -> int:
    return pair_parts(prev_hash, mask)[0] ^ pair_parts(word_hash, mask)[1]


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


# Where a text comes from decides the judgement. In a user's own request instructions are normal
# ("act as a code optimiser"), so the whole request must look like an attack. In data the
# assistant reads (tool results, retrieved documents, embedded texts, tool descriptions) one
# instruction addressed to the assistant is the signal however long the document around it, so
# data is scored by its most attack-like window of DATA_WINDOW tokens, against thresholds set on
# benign documents. Not scored: answers; operator text (system, developer, instructions) and
# replayed assistant turns, since nearly every protective system prompt ("never reveal these
# instructions") reads as an attack (the rules inspect those roles, llm_firewall.score.corroborate);
# schemas (tool parameters, response formats read whole), whose keys and enums are not prose.
ROLE_GROUPS: dict[str, str] = {
    "user": "request", "input": "request", "prompt": "request",
    "tool": "data", "function": "data", "tool_call": "data", "tool_description": "data",
    "embedding": "data",
}
SCANNED_ROLES = frozenset(ROLE_GROUPS)
SEVERITIES = ("high", "medium")  # the model never says critical: it is one signal, not proof
DATA_WINDOW = 32  # tokens
DATA_STRIDE = 16


def window_starts(n_tokens: int, window: int = DATA_WINDOW, stride: int = DATA_STRIDE) -> list[int]:
    """Start of every window over n tokens (the last one ends at the last token)."""
    if n_tokens <= window:
        return [0]
    starts = list(range(0, n_tokens - window + 1, stride))
    if starts[-1] != n_tokens - window:
        starts.append(n_tokens - window)
    return starts


class LinearModel:
    """One hashed-feature logistic regression: the log-odds of a text, with a token cache."""

    def __init__(self, weights: array.array, scale: float, bias: float, bits: int,
                 normalize: Callable[[str], str]) -> None:
        self._w = weights
        self._scale = scale
        self._bias = bias
        self._mask = (1 << bits) - 1
        self._normalize = normalize
        # token -> (summed quantised weights of its own features << COUNT_BITS | feature count,
        # *pair_parts of its word hash): pairs need no cache of their own, one native `xor` map.
        # One int for sum and count: `sum` adds ints natively (a complex pair cost 3x as much).
        self._cache: dict[str, tuple[int, int, int]] = {}

    def _learn(self, toks: list[str], entries: list[tuple[int, int, int] | None]) -> None:
        """Fill the cache misses (None) in `entries`, the cached entries of `toks`."""
        cache = self._cache
        if len(cache) + len(toks) > _CACHE_LIMIT:  # bounded: start afresh
            cache.clear()
            entries[:] = [None] * len(toks)
        w, mask = self._w, self._mask
        i = entries.index(None)
        while True:
            tok = toks[i]
            entry = cache.get(tok)  # a token repeated in this text is computed once
            if entry is None:
                feats, word_hash = token_features(tok, mask)
                entry = ((sum(map(w.__getitem__, feats)) << COUNT_BITS) | len(feats), *pair_parts(word_hash, mask))
                if len(tok) <= _CACHED_TOKEN_CHARS:
                    cache[tok] = entry
            entries[i] = entry
            try:
                i = entries.index(None, i + 1)
            except ValueError:
                return

    def _scored(self, text: str) -> tuple[list[str], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Tokens, their packed (weight sum, count) values and their word-pair parts."""
        toks = tokens_of(self._normalize(bound_text(text)))
        if not toks:
            return toks, (), (), ()
        entries = list(map(self._cache.get, toks))
        try:
            values, lefts, rights = zip(*entries, strict=False)
        except TypeError:  # a token not seen yet (None)
            self._learn(toks, entries)
            values, lefts, rights = zip(*entries, strict=False)
        return toks, values, lefts, rights

    def margin(self, text: str) -> float:
        """The model's log-odds that `text` is a prompt attack.

        Each token's own features are summed once and cached with its word hash; the word
        pairs' features come from those hashes. One dictionary lookup per token, then native
        `zip`, `map` and `sum`: no Python code per token except for tokens never seen before.
        """
        toks, values, lefts, rights = self._scored(text)
        if not toks:
            return self._bias
        packed = sum(values)  # (Σ weights << COUNT_BITS) + Σ counts: the counts never carry over
        z, n = packed >> COUNT_BITS, packed & _COUNT_MASK
        if len(toks) > 1:
            pairs = map(xor, lefts, islice(rights, 1, None))
            z += sum(map(self._w.__getitem__, pairs))
            n += len(toks) - 1
        return self._bias + self._scale * z / math.sqrt(n)

    def window_margin(self, text: str, window: int = DATA_WINDOW, stride: int = DATA_STRIDE) -> float:
        """The highest log-odds of any window of `window` tokens (prefix sums: O(tokens))."""
        toks, values, lefts, rights = self._scored(text)
        if len(toks) <= window:
            return self.margin(text)
        tok_sums = [0, *accumulate(values)]
        pair_sums = [0, *accumulate(map(self._w.__getitem__, map(xor, lefts, islice(rights, 1, None))))]
        best = -math.inf
        for st in window_starts(len(toks), window, stride):
            packed = tok_sums[st + window] - tok_sums[st]
            z = (packed >> COUNT_BITS) + pair_sums[st + window - 1] - pair_sums[st]
            n = (packed & _COUNT_MASK) + window - 1
            best = max(best, z / math.sqrt(n))
        return self._bias + self._scale * best


class LearnedDetector:
    """Scores prompt attacks, judging each text as its role group says; emits ML-PI-001 findings.

    Each group has two margins chosen on leave-one-source-out predictions: at or above `high`
    the finding is high (the production policy may refuse), at or above `medium` it is an
    investigate signal the production policy only records.
    """

    rule_id = RULE_ID  # what a policy's rule_overrides calls this detector

    def __init__(self, model: LinearModel | None, thresholds: dict[str, dict[str, float]],
                 bits: int, normalizer: str = "views", meta: dict | None = None) -> None:
        self.model = model
        self.thresholds = thresholds
        self.bits = bits
        self.meta = meta or {}
        self.normalizer = normalizer

    @staticmethod
    def normalize_fn(name: str = "views") -> tuple[Callable[[str], str], str]:
        """The text normaliser the model was trained with (and its effective name)."""
        fn = _views_normalize() if name == "views" else None
        return (fn, "views") if fn else (_basic_normalize, "basic")

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedDetector:
        p = Path(path) if path is not None else DEFAULT_PATH
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            bits = int(doc["bits"])
            norm, norm_name = cls.normalize_fn(str(doc.get("normalizer", "views")))
            weights = unpack_weights(doc["weights"])
            if len(weights) != 1 << bits:
                raise ValueError(f"expected {1 << bits} weights, found {len(weights)}")
            model = LinearModel(weights, float(doc["scale"]), float(doc["bias"]), bits, norm)
            thresholds = {g: {s: float(doc["thresholds"][g][s]) for s in SEVERITIES}
                          for g in set(ROLE_GROUPS.values())}
            return cls(model, thresholds, bits, norm_name, doc.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as exc:
            raise ValueError(f"{p}: cannot load learned model ({exc})") from exc

    def margin(self, text: str, role: str = "user") -> float:
        """Log-odds of an attack, judged as `role`'s group says (whole text or best window)."""
        assert self.model is not None
        if ROLE_GROUPS.get(role, "request") == "data":
            return self.model.window_margin(text)
        return self.model.margin(text)

    def probability(self, text: str, role: str = "user") -> float:
        z = self.margin(text, role)
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def severity(self, margin: float, role: str = "user") -> str | None:
        """high, medium or None for a margin under the thresholds of `role`'s group."""
        bands = self.thresholds[ROLE_GROUPS.get(role, "request")]
        for name in SEVERITIES:
            if margin >= bands[name]:
                return name
        return None

    def detect(self, text: str, role: str, path: str, direction: str) -> list[Finding]:
        if direction != "request" or role not in ROLE_GROUPS or not scorable(bound_text(text)):
            return []
        return self.findings(text, role, path, self.margin(text, role))

    def findings(self, text: str, role: str, path: str, margin: float) -> list[Finding]:
        """The finding (if any) for a text whose margin is known (training scripts reuse it)."""
        severity = self.severity(margin, role)
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
                excerpt=_excerpt(text),
                span=(0, len(text)),
            )
        ]


def _excerpt(text: str, limit: int = 120) -> str:
    """The text's start, whitespace collapsed, cut from the redacted text (`redact.excerpt`)."""
    flat = " ".join(text.split())
    return excerpt(flat, (0, len(flat)), context=0, limit=limit - 1)
