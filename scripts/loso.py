"""Leave-one-source-out (LOSO) figures of the whole request-side analysis, and the FP scorer.

    .venv/bin/python scripts/loso.py [--datasets DIR | --corpus FILE ...] [--format md|json] [--write-fp]

For every source of dev.jsonl + train_extra.jsonl, every learned part is trained without that
source and then judges it: the learned detector's two models (scripts/train_learned.py), the
false-positive scorer's coefficients and its per-rule precision table. The rules are hand-written
and fixed. Each text is then decided by the production policy, as the proxy would, and the
script prints attacks caught and benign refused per source, per category and overall, the
learned model alone, and the scorer's reliability table and Brier score on out-of-source
findings. `--write-fp` also fits the shipped scorer (llm_firewall/data/fp_model.json) on every
source's out-of-source findings (what scripts/train_fp.py runs). About ten minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_learned as TL

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.learned import LearnedDetector
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.domain import Finding
from llm_firewall.score.corpus import Example
from llm_firewall.score.features import FEATURES, ScoreContext
from llm_firewall.score.fp import DEFAULT_PATH, FPScorer
from llm_firewall.tools.evaluate import Outcome, _decider, attack_score, by_source, render_md, summarise

SMOOTHING = 2.0  # pseudo-counts pulling a rarely seen rule's precision towards the average
FP_C = 1.0  # inverse L2 strength of the scorer's logistic regression
BINS = 10


@dataclass
class Judged:
    """One corpus text with its findings (rules + out-of-source model) and their features."""

    example: Example
    findings: list[Finding]
    features: list[dict[str, float]]


def precision_table(pairs: list[tuple[Finding, int]]) -> tuple[dict[str, float], float]:
    """Smoothed precision per rule, per "rule:severity" and per "rule:severity@role".

    Shrinkage follows the data's own hierarchy (SMOOTHING pseudo-counts each): a rule's precision
    is pulled towards the precision of all findings; a rule-at-severity's towards that of all
    findings at that severity (a rarely seen low-severity rule starts from what low-severity
    findings measured, not from the high-severity rules' near-perfect record); a
    rule-at-severity-in-a-role's towards the rule-at-severity's.
    """
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for f, fp in pairs:
        for key in (f"{f.rule_id}:{f.severity}", f.rule_id, f"*:{f.severity}", f"{f.rule_id}:{f.severity}@{f.role}"):
            counts[key][fp] += 1
    total_tp = sum(1 for _, fp in pairs if not fp)
    base = (total_tp + 1) / (len(pairs) + 2)

    def shrunk(key: str, prior: float) -> float:
        tp, fp = counts[key]
        return (tp + SMOOTHING * prior) / (tp + fp + SMOOTHING)

    table: dict[str, float] = {}
    for k in counts:
        if ":" not in k:
            table[k] = shrunk(k, base)
    for k in counts:
        if ":" in k and "@" not in k and not k.startswith("*:"):
            table[k] = shrunk(k, shrunk("*:" + k.split(":", 1)[1], base))
    for k in counts:
        if "@" in k:
            table[k] = shrunk(k, table[k.split("@", 1)[0]])
    return table, base


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def judge_corpus(examples: list[Example], margins: dict[int, float], cuts: dict, overrides: dict,
                 log=sys.stderr) -> list[Judged]:
    """Rule findings plus the out-of-source model finding of every text, with their features."""
    engine = Engine(load_rules(default_rules_dir()), overrides=overrides)
    norm_name = TL.normalizer()[1]
    detector = LearnedDetector(None, cuts, TL.BITS, norm_name)
    blank = FPScorer({n: 0.0 for n in FEATURES}, 0.0, {}, {}, 0.5)
    out = []
    started = time.perf_counter()
    for i, ex in enumerate(examples):
        fs = engine.scan_text(ex.text, ex.role, "request", "text")
        if i in margins:
            fs += [f for f in detector.findings(ex.text, ex.role, "text", margins[i])
                   if overrides.get(f.rule_id, {}).get("enabled", True) is not False]
        out.append(Judged(ex, fs, blank.features(fs, {"text": ex.text}, ScoreContext()) if fs else []))
    print(f"  rules + model findings for {len(examples)} texts ({time.perf_counter() - started:.0f}s)", file=log)
    return out


def _matrix(items: list[Judged], table: dict[str, float], base: float) -> tuple[np.ndarray, np.ndarray]:
    X, y = [], []
    for j in items:
        for f, x in zip(j.findings, j.features, strict=False):
            p = table.get(f"{f.rule_id}:{f.severity}@{f.role}",
                          table.get(f"{f.rule_id}:{f.severity}", table.get(f.rule_id, base)))
            x = dict(x, rule_precision=_logit(p))
            X.append([x[n] for n in FEATURES])
            y.append(int(not j.example.is_attack))
    return np.array(X, dtype=float).reshape(-1, len(FEATURES)), np.array(y)


def fit_scorer(items: list[Judged]) -> FPScorer:
    """The FP scorer fitted on these texts' findings: precision table and every coefficient."""
    pairs = [(f, int(not j.example.is_attack)) for j in items for f in j.findings]
    table, base = precision_table(pairs)
    X, y = _matrix(items, table, base)
    model = LogisticRegression(C=FP_C, max_iter=1000).fit(X, y)
    coef = dict(zip(FEATURES, model.coef_[0].tolist(), strict=False))
    reference = dict(zip(FEATURES, X.mean(axis=0).tolist(), strict=False))
    return FPScorer(coef, float(model.intercept_[0]), reference, table, base)


def loso_scores(judged: list[Judged], log=sys.stderr) -> None:
    """Score every text's findings with a scorer fitted without its source (in place)."""
    by_src: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_src[TL.source_of(j.example)].append(j)
    for source, mine in by_src.items():
        others = [j for j in judged if TL.source_of(j.example) != source]
        labels = {j.example.is_attack for j in others if j.findings}
        if not any(j.findings for j in mine) or len(labels) < 2:
            continue  # nothing to score, or nothing to learn from without this source
        scorer = fit_scorer(others)
        for j in mine:
            if j.findings:
                scorer.score(j.findings, {"text": j.example.text})
    print(f"  scorer fitted {len(by_src)} times", file=log)


def reliability(pairs: list[tuple[float, int]]) -> list[dict[str, float]]:
    bins: list[list[tuple[float, int]]] = [[] for _ in range(BINS)]
    for p, y in pairs:
        bins[min(BINS - 1, int(p * BINS))].append((p, y))
    return [{"bin": f"{i / BINS:.1f}-{(i + 1) / BINS:.1f}", "n": len(b),
             "mean_predicted": round(sum(p for p, _ in b) / len(b), 3),
             "observed_fp_rate": round(sum(y for _, y in b) / len(b), 3)} for i, b in enumerate(bins) if b]


def calibration(judged: list[Judged]) -> dict:
    pairs = [(f.fp_probability or 0.0, int(not j.example.is_attack)) for j in judged for f in j.findings]
    brier = sum((p - t) ** 2 for p, t in pairs) / max(1, len(pairs))
    return {"findings": len(pairs), "false_positives": sum(t for _, t in pairs), "brier": round(brier, 5),
            "bins": reliability(pairs)}


def run(datasets: str | None, margins_file: str | None = None, files: list[str] | None = None,
        log=sys.stderr) -> tuple[list[Judged], dict, dict]:
    """(judged texts with out-of-source FP scores, learned thresholds, decision helpers).

    `margins_file`: reuse the learned model's LOSO margins saved there by an earlier run (they
    depend only on the corpus and scripts/train_learned.py), else compute and save them.
    """
    started = time.perf_counter()
    norm, _ = TL.normalizer()
    examples = TL.load_corpus(None if files else TL.datasets_dir(datasets), files)
    if margins_file and Path(margins_file).is_file():
        margins = {int(k): v for k, v in json.loads(Path(margins_file).read_text()).items()}
    else:
        corpus = TL.Corpus(examples, TL.written_examples(), norm)
        margins = TL.loso_margins(corpus, examples, norm, log)
        if margins_file:
            Path(margins_file).write_text(json.dumps(margins))
    cuts = TL.thresholds(examples, margins)
    refused, overrides, description = _decider(None)
    judged = judge_corpus(examples, margins, cuts, overrides, log)
    loso_scores(judged, log)
    print(f"  done in {time.perf_counter() - started:.0f}s", file=log)
    return judged, cuts, {"refused": refused, "decision": description}


def report(judged: list[Judged], decision: dict) -> dict:
    refused = decision["refused"]
    outcomes = [Outcome(j.example, refused(j.findings), attack_score(j.findings), 0.0,
                        tuple(f.rule_id for f in j.findings)) for j in judged]
    result = summarise(outcomes)
    result["sources"] = by_source(outcomes)
    alone = [Outcome(j.example, refused([f for f in j.findings if f.rule_id == "ML-PI-001"]), 0.0, 0.0)
             for j in judged]
    result["model_alone"] = by_source(alone)
    result["calibration"] = calibration(judged)
    result["decision"] = f"{decision['decision']}, leave-one-source-out"
    result["texts"] = len(outcomes)
    result["corpus"] = "dev.jsonl + train_extra.jsonl"
    result["split"] = "leave-one-source-out"
    return result


def render(result: dict) -> str:
    out = [render_md(result)]
    alone = result["model_alone"][0]
    out.append(f"\nML-PI-001 alone (its findings only, same policy): benign refused "
               f"{alone['benign_refused']:.2%} ({alone['benign_refused_count']}/{alone['benign']}), "
               f"attacks refused {alone['attacks_refused']:.1%}\n")
    cal = result["calibration"]
    out.append(f"FP scorer on out-of-source findings: {cal['findings']} findings, {cal['false_positives']} "
               f"false positives, Brier {cal['brier']:.4f}\n")
    out.append("| predicted FP probability | findings | mean predicted | observed FP rate |\n|---|---:|---:|---:|")
    out += [f"| {r['bin']} | {r['n']} | {r['mean_predicted']:.3f} | {r['observed_fp_rate']:.3f} |" for r in cal["bins"]]
    return "\n".join(out) + "\n"


def write_fp(judged: list[Judged], result: dict, path: str | Path) -> FPScorer:
    """Fit the shipped scorer on every source's out-of-source findings and write it."""
    scorer = fit_scorer(judged)
    doc = {
        "format": 2,
        "model": "logistic regression, P(finding is a false positive)",
        "features": list(FEATURES),
        "coef": {n: round(scorer.coef[n], 6) for n in FEATURES},
        "intercept": round(scorer.intercept, 6),
        "reference": {n: round(v, 6) for n, v in scorer.reference.items()},
        "rule_precision": {k: round(v, 4) for k, v in sorted(scorer.precision.items())},
        "default_precision": round(scorer.default_precision, 4),
        "calibration_loso": result["calibration"],
        "meta": {"C": FP_C, "smoothing": SMOOTHING, "training_findings": result["calibration"]["findings"],
                 "rows": "rules' and ML-PI-001's out-of-source findings on dev.jsonl + train_extra.jsonl",
                 "notes": ["every coefficient is fitted; a feature that never varies in the corpus "
                           "(recent_alerts) gets 0 from the L2 penalty"]},
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return FPScorer.load(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=None, help="directory holding dev.jsonl and train_extra.jsonl")
    ap.add_argument("--format", choices=("md", "json"), default="md")
    ap.add_argument("--corpus", action="append", default=None, metavar="FILE",
                    help="labelled JSON-lines files instead of the shared datasets (repeatable)")
    ap.add_argument("--no-write", action="store_true", help="with --write-fp: fit and report, write nothing")
    ap.add_argument("--margins", default=None, metavar="FILE",
                    help="cache of the learned model's LOSO margins (read if present, else written)")
    ap.add_argument("--write-fp", nargs="?", const=str(DEFAULT_PATH), default=None, metavar="PATH",
                    help="also fit and write the shipped false-positive scorer")
    args = ap.parse_args(argv)
    judged, _, decision = run(args.datasets, args.margins, args.corpus)
    result = report(judged, decision)
    print(json.dumps(result, indent=1) if args.format == "json" else render(result), end="")
    if args.write_fp and not args.no_write:
        write_fp(judged, result, args.write_fp)
        print(f"wrote {args.write_fp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
