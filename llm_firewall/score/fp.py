"""The false-positive scorer: for every finding, P(false positive) and the features behind it.

A logistic regression over the named features in `features.py`, fitted by
``scripts/train_fp.py`` on the findings the rules and the learned detector raise over the
labelled corpus, each text judged by a model trained without its source (label: the text was
benign). Every coefficient is fitted. Coefficients, per-rule precision and the out-of-source
reliability table live in ``llm_firewall/data/fp_model.json``. The
recommendation bands turn the probability into block / investigate / monitor.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llm_firewall.domain import Finding
from llm_firewall.score.features import FEATURES, ScoreContext, TextFacts, finding_features

__all__ = ["Bands", "FPScorer", "ScoreContext", "DEFAULT_PATH", "recommend"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "fp_model.json"
EXPLAIN_TOP = 4


NO_CONTEXT = ScoreContext()  # frozen: one shared default is safe


@dataclass(frozen=True)
class Bands:
    """Recommendation bands on the false-positive probability."""

    block_below: float = 0.3
    monitor_above: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.block_below <= self.monitor_above <= 1.0:
            raise ValueError("bands need 0 <= block_below <= monitor_above <= 1")


def recommend(fp: float, bands: Bands = Bands()) -> str:
    if fp < bands.block_below:
        return "block"
    if fp > bands.monitor_above:
        return "monitor"
    return "investigate"


class FPScorer:
    def __init__(self, coef: Mapping[str, float], intercept: float, reference: Mapping[str, float],
                 precision: Mapping[str, float], default_precision: float,
                 meta: Mapping[str, object] | None = None) -> None:
        missing = [name for name in FEATURES if name not in coef]
        if missing:
            raise ValueError(f"model lacks coefficients for {missing}")
        self.coef = dict(coef)
        self.intercept = float(intercept)
        self.reference = {name: float(reference.get(name, 0.0)) for name in FEATURES}
        self.precision = dict(precision)
        self.default_precision = float(default_precision)
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path | None = None) -> FPScorer:
        p = Path(path) if path is not None else DEFAULT_PATH
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return cls(doc["coef"], doc["intercept"], doc.get("reference", {}),
                       doc.get("rule_precision", {}), doc.get("default_precision", 0.9),
                       doc.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: cannot load false-positive model ({exc})") from exc

    def features(self, findings: list[Finding], texts: Mapping[str, str],
                 ctx: ScoreContext = NO_CONTEXT) -> list[dict[str, float]]:
        """The feature values of each finding (in order), for training and explanation."""
        by_path: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            by_path[f.path].append(f)
        facts: dict[str, TextFacts] = {}
        out = []
        for f in findings:
            if f.path not in facts:
                facts[f.path] = TextFacts.of(texts.get(f.path, f.excerpt))
            out.append(finding_features(f, facts[f.path], by_path[f.path], ctx, self.precision,
                                        self.default_precision))
        return out

    def probability(self, x: Mapping[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """P(false positive) and every feature's contribution (log-odds vs. the reference)."""
        contrib = [(name, self.coef[name] * (x[name] - self.reference[name])) for name in FEATURES]
        z = self.intercept + sum(self.coef[name] * self.reference[name] for name in FEATURES)
        z += sum(c for _, c in contrib)
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return p, contrib

    def score(self, findings: list[Finding], texts: Mapping[str, str],
              ctx: ScoreContext = NO_CONTEXT, bands: Bands = Bands()) -> None:
        """Set fp_probability, fp_explanation and recommendation on every finding."""
        for f, x in zip(findings, self.features(findings, texts, ctx), strict=False):
            p, contrib = self.probability(x)
            top = sorted((c for c in contrib if abs(c[1]) >= 0.01), key=lambda c: -abs(c[1]))
            f.fp_probability = round(p, 4)
            f.fp_explanation = [(name, round(c, 4)) for name, c in top[:EXPLAIN_TOP]]
            f.recommendation = recommend(p, bands)
