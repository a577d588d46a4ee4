"""Rules, the learned detector and the false-positive scorer, composed once for every caller.

The proxy, `llm-firewall scan` and `llm-firewall eval` all inspect through this one object, so
a text gets the same verdict wherever it is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.learned import LearnedDetector
from llm_firewall.detect.rules import default_rules_dir, load_rule_layers
from llm_firewall.domain import Finding, TextItem
from llm_firewall.score.corroborate import require_corroboration
from llm_firewall.score.fp import Bands, FPScorer, ScoreContext


class Inspector:
    def __init__(self, engine: Engine, scorer: FPScorer | None) -> None:
        self.engine = engine
        self.scorer = scorer

    @classmethod
    def load(cls, rules_dir: Path | None = None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None,
             learned: bool = True, verdict_cache_chars: int = 0, local_rules_dirs: Sequence[Path] = ()) -> "Inspector":
        """The shipped rules (or `rules_dir`), with `local_rules_dirs` layered on top in order."""
        ruleset = load_rule_layers([rules_dir or default_rules_dir(), *local_rules_dirs])
        detectors = [LearnedDetector.load()] if learned else []
        return cls(Engine(ruleset, overrides=overrides, detectors=detectors,
                          verdict_cache_chars=verdict_cache_chars), FPScorer.load())

    def inspect(self, items: Sequence[TextItem], direction: str = "request", *,
                ctx: ScoreContext | None = None, bands: Bands | None = None) -> list[Finding]:
        findings = self.engine.scan(items, direction)
        if findings and self.scorer is not None:
            bands = bands or Bands()
            self.scorer.score(findings, {item.path: item.text for item in items}, ctx or ScoreContext(), bands)
            require_corroboration(findings, bands)
        return findings

    def inspect_text(self, text: str, role: str = "user", direction: str = "request") -> list[Finding]:
        return self.inspect([TextItem(text, role, "text")], direction)
