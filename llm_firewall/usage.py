"""Token and cost accounting per user, API key and model, from the upstream's own `usage`.

When a stream carries no usage, the count is estimated (about four characters a token) and
marked as an estimate, never passed off as the provider's figure.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_firewall.domain import Identity


@dataclass(frozen=True, slots=True)
class Price:
    prompt_per_1k: float
    completion_per_1k: float


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """The price table (US dollars per 1,000 tokens) from YAML; unknown models cost 0."""
    path = path or Path(__file__).with_name("data") / "prices.yaml"
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    out = {}
    for model, entry in (raw.get("models") or {}).items():
        try:
            out[str(model)] = Price(float(entry["prompt_per_1k"]), float(entry["completion_per_1k"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: model {model!r}: needs numeric prompt_per_1k and completion_per_1k ({exc})") from None
    return out


@dataclass(slots=True)
class Totals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "estimated_tokens": self.estimated_tokens, "requests": self.requests,
                "cost_usd": round(self.cost_usd, 10)}


@dataclass
class UsageTracker:
    prices: dict[str, Price] = field(default_factory=load_prices)
    max_subjects: int = 10_000
    max_models: int = 64
    by_model: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_user: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_key: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    metrics: Any = None
    _price_cache: dict[str, Price | None] = field(default_factory=dict)
    _day: int = -1
    _today: dict[tuple[str, str], int] = field(default_factory=dict)

    def price_for(self, model: str | None) -> Price | None:
        """The longest price-table prefix of `model`; remembered, since models repeat."""
        if not model:
            return None
        if model in self._price_cache:
            return self._price_cache[model]
        best = max((m for m in self.prices if model.startswith(m)), key=len, default=None)
        price = self.prices.get(best) if best else None
        if len(self._price_cache) < self.max_models * 4:
            self._price_cache[model] = price
        return price

    def record(self, identity: Identity, model: str | None, usage: Mapping[str, Any] | None,
               *, estimated_from: int | None) -> None:
        """Add one answer's usage; `estimated_from` is the answer's length when usage is missing."""
        prompt = completion = estimated = 0
        if isinstance(usage, Mapping):
            prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
            completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        elif estimated_from:
            completion = estimated = math.ceil(estimated_from / 4)
        else:
            return
        model_name = self._model_label(model)
        price = self.price_for(model_name)
        cost = (prompt * price.prompt_per_1k + completion * price.completion_per_1k) / 1000 if price else 0.0
        targets = [self.by_model[model_name]]
        if identity.user and (identity.user in self.by_user or len(self.by_user) < self.max_subjects):
            targets.append(self.by_user[identity.user])
        if identity.api_key_hash and (identity.api_key_hash in self.by_key or len(self.by_key) < self.max_subjects):
            targets.append(self.by_key[identity.api_key_hash])
        self._count_today(identity, prompt + completion)
        for t in targets:
            t.prompt_tokens += prompt
            t.completion_tokens += completion
            t.estimated_tokens += estimated
            t.requests += 1
            t.cost_usd += cost
        if self.metrics is not None:
            m = self.metrics
            m.child(m.tokens, model_name, "prompt").inc(prompt)
            m.child(m.tokens, model_name, "completion").inc(completion)
            m.child(m.cost, model_name).inc(cost)

    def _model_label(self, model: str | None) -> str:
        """Model names come from requests: bound them so neither memory nor metric labels grow."""
        name = (model or "unknown")[:64]
        if name in self.by_model or self.price_for(name) is not None or len(self.by_model) < self.max_models:
            return name
        return "other"

    def tokens_today(self, kind: str, subject: str, now: float | None = None) -> int:
        """Tokens used since midnight UTC by one user or API key (kind 'user' or 'key')."""
        day = int((time.time() if now is None else now) // 86400)
        if self._day != day:
            return 0
        return self._today.get((kind, subject), 0)

    def _count_today(self, identity: Identity, tokens: int) -> None:
        day = int(time.time() // 86400)
        if day != self._day:  # a new UTC day: budgets start again
            self._day, self._today = day, {}
        for kind, subject in (("user", identity.user), ("key", identity.api_key_hash)):
            if subject and ((kind, subject) in self._today or len(self._today) < 2 * self.max_subjects):
                self._today[(kind, subject)] = self._today.get((kind, subject), 0) + tokens

    def summary(self) -> dict[str, Any]:
        return {"by_model": {k: v.as_dict() for k, v in self.by_model.items()},
                "by_user": {k: v.as_dict() for k, v in self.by_user.items()},
                "by_key": {k: v.as_dict() for k, v in self.by_key.items()}}
