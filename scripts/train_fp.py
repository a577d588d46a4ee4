"""Train the false-positive scorer (llm_firewall/data/fp_model.json) and check its calibration.

    .venv/bin/python scripts/train_fp.py [--corpus PATH] [--no-write]

Rows: every finding the rules and the learned detector raise on the training part of the
labelled corpus (`--corpus`, default as in train_learned.py; all categories; the held-out fifth is excluded by
llm_firewall.score.corpus.is_heldout), plus the hand-written examples of train_learned.py. A written benign text that no rule flags is
given the finding a naive trigger-word rule would raise on it (labelled FP), so the scorer learns
what such false positives look like even when today's rules are too precise to show any.
Label: 1 (false positive) when the text is benign, 0 when it is an attack. To keep the
training honest, each corpus text sees the learned model of the fold that did not train on it
and per-rule precision measured without its own fold (stacking); the shipped precision table
uses the whole training part.

Model: logistic regression on the named features of llm_firewall/score/features.py, fitted by
Newton's method with a ridge penalty towards small prior coefficients whose signs encode the
design (code/question/quoting raise the FP odds; agreeing signals, obfuscation, high precision
lower them). Two features never vary in the corpus (role of the text, caller's recent alerts):
their coefficients are fixed priors, stated as such in the model file. A coefficient whose
fitted sign contradicts the design is pinned to a quarter of its prior and the rest refitted.

Prints the reliability table (bins of predicted FP probability vs observed FP rate) on the
held-out fifth, scored by the shipped learned model and the shipped precision table.
Pure Python (no numpy), deterministic; about a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_learned as TL  # noqa: E402

from llm_firewall.detect.engine import Engine  # noqa: E402
from llm_firewall.detect.learned import LearnedDetector  # noqa: E402
from llm_firewall.detect.rules import default_rules_dir, load_rules  # noqa: E402
from llm_firewall.domain import Finding  # noqa: E402
from llm_firewall.score.corpus import Example, fold_of, is_heldout, read_jsonl  # noqa: E402
from llm_firewall.score.features import FEATURES, ScoreContext  # noqa: E402
from llm_firewall.score.fp import DEFAULT_PATH, FPScorer  # noqa: E402

FOLDS = 5
SMOOTHING = 2.0  # pseudo-counts pulling a rarely seen rule's precision towards the average
RIDGE = 1.0
SYNTHETIC_WEIGHT = 1.0
# Prior coefficients (log-odds of FP per unit of the raw feature) and their design signs.
PRIOR: dict[str, float] = {
    "rule_precision": -0.5, "severity": -0.3, "code_context": 1.0, "question": 0.5,
    "educational": 0.5, "quoted": 0.5, "negation": 0.5, "role_trust": 1.0,
    "other_signals": -0.5, "other_threats": -0.3, "learned_agrees": -1.0, "obfuscated": -1.0,
    "recent_alerts": -0.7, "log_length": 0.0, "entropy": 0.0,
}
FIXED = ("role_trust", "recent_alerts")  # no variation in the corpus: design priors, not fitted
BINS = 10


def precision_table(rows: list[tuple[Finding, int]]) -> tuple[dict[str, float], float]:
    """Smoothed precision per "rule:severity" and per rule from (finding, is_fp) pairs."""
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for f, fp in rows:
        for key in (f"{f.rule_id}:{f.severity}", f.rule_id):
            counts[key][fp] += 1
    total_tp = sum(1 for _, fp in rows if not fp)
    base = (total_tp + 1) / (len(rows) + 2)
    table = {k: (tp + SMOOTHING * base) / (tp + fp + SMOOTHING) for k, (tp, fp) in counts.items()}
    return table, base


def fit(X: list[list[float]], y: list[int], wt: list[float], names: list[str],
        offset: list[float]) -> tuple[list[float], float]:
    """Ridge-to-prior logistic regression by Newton's method (intercept unpenalised)."""
    d = len(names) + 1
    beta = [0.0] + [PRIOR[n] for n in names]
    prior = [0.0] + [PRIOR[n] for n in names]
    for _ in range(30):
        g = [0.0] * d
        H = [[0.0] * d for _ in range(d)]
        for xi, yi, wi, oi in zip(X, y, wt, offset):
            row = [1.0] + xi
            z = oi + sum(b * v for b, v in zip(beta, row))
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            r = wi * (p - yi)
            s = wi * p * (1 - p)
            for a in range(d):
                g[a] += r * row[a]
                if row[a]:
                    ra = s * row[a]
                    Ha = H[a]
                    for c in range(a, d):
                        Ha[c] += ra * row[c]
        for a in range(d):
            for c in range(a):
                H[a][c] = H[c][a]
        for a in range(1, d):
            g[a] += RIDGE * (beta[a] - prior[a])
            H[a][a] += RIDGE
        step = solve(H, g)
        beta = [b - s for b, s in zip(beta, step)]
        if max(abs(s) for s in step) < 1e-7:
            break
    return beta[1:], beta[0]


def solve(A: list[list[float]], b: list[float]) -> list[float]:
    n = len(b)
    M = [row[:] + [b[i]] for i, row in enumerate(A)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(M[r][col]))
        M[col], M[piv] = M[piv], M[col]
        lead = M[col][col] or 1e-12
        for r in range(n):
            if r != col and M[r][col]:
                factor = M[r][col] / lead
                M[r] = [a - factor * c for a, c in zip(M[r], M[col])]
    return [M[i][n] / (M[i][i] or 1e-12) for i in range(n)]


def fit_constrained(X: list[dict[str, float]], y: list[int], wt: list[float]) -> tuple[dict[str, float], float, list[str]]:
    pinned: dict[str, float] = {n: PRIOR[n] for n in FIXED}
    notes: list[str] = []
    while True:
        names = [n for n in FEATURES if n not in pinned]
        offset = [sum(pinned[n] * x[n] for n in pinned) for x in X]
        coef, intercept = fit([[x[n] for n in names] for x in X], y, wt, names, offset)
        fitted = dict(zip(names, coef))
        wrong = [n for n in names if PRIOR[n] and fitted[n] * PRIOR[n] < 0]
        if not wrong:
            fitted.update(pinned)
            return fitted, intercept, notes
        worst = max(wrong, key=lambda n: abs(fitted[n]))
        pinned[worst] = PRIOR[worst] / 4
        notes.append(f"{worst}: fitted {fitted[worst]:+.3f} against the design sign, pinned to {pinned[worst]:+.3f}")


_TRIGGER = re.compile(r"(?i)\b(ignore|disregard|forget|override|bypass|system prompt|prompt injection|"
                      r"jailbreak|developer mode|act as|pretend|instructions|reveal|execute|sudo|kill|password|api key)")


def naive_finding(text: str, rule_id: str) -> list[Finding]:
    """What a naive trigger-word rule would raise on a written benign text (a known FP shape)."""
    m = _TRIGGER.search(text)
    if m is None:
        return []
    return [Finding(rule_id=rule_id, title="naive trigger word", threat="prompt_injection", severity="high",
                    path="text", span=m.span(), excerpt=m.group(0))]


def scan(engine: Engine, detector: LearnedDetector, text: str) -> list[Finding]:
    findings = engine.scan_text(text, "user", "request", "text")
    findings += detector.detect(text, "user", "text", "request")
    return findings


def reliability(pairs: list[tuple[float, int]]) -> list[dict[str, float]]:
    bins: list[list[tuple[float, int]]] = [[] for _ in range(BINS)]
    for p, y in pairs:
        bins[min(BINS - 1, int(p * BINS))].append((p, y))
    out = []
    for i, b in enumerate(bins):
        if b:
            out.append({"bin": f"{i / BINS:.1f}-{(i + 1) / BINS:.1f}", "n": len(b),
                        "mean_predicted": round(sum(p for p, _ in b) / len(b), 3),
                        "observed_fp_rate": round(sum(y for _, y in b) / len(b), 3)})
    return out


def decision_report(train_items: list, held_items: list, model: FPScorer, fold_tables: dict) -> None:
    """Refusal shares per category over the WHOLE corpus, every text judged out-of-fold.

    A training-part text is scanned by the learned fold model that did not see it and scored
    with the precision table measured without its fold; a held-out text by the shipped models.
    The decision is the production policy's (as in `llm-firewall eval`). Small held-out
    categories are noisy; this figure uses five times as many texts. (The scorer's fifteen
    coefficients are fitted on the training part, so they are not out-of-fold.)
    """
    import dataclasses

    from llm_firewall.evaluate import _decider

    refused, overrides, _ = _decider(None)
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    items = [(ex, fs, k) for ex, fs, k in train_items if k >= 0] + [(ex, fs, -1) for ex, fs in held_items]
    for ex, fs, k in items:
        fs = [dataclasses.replace(f, **{a: o[a] for a in ("severity", "status") if a in o})
              if (o := overrides.get(f.rule_id)) else f
              for f in fs if overrides.get(f.rule_id, {}).get("enabled", True) is not False]
        if fs:
            prec, pbase = fold_tables[k]
            FPScorer(model.coef, model.intercept, model.reference, prec, pbase).score(fs, {"text": ex.text})
        hit = refused(fs)
        for name in {ex.top, ex.sub, "ALL attacks" if ex.is_attack else "ALL benign"}:
            stats[name][0] += 1
            stats[name][1] += hit
    print("\n## Whole corpus, out-of-fold, production decision\n")
    print("| category | texts | refused |\n|---|---:|---:|")
    for name in sorted(stats, key=lambda n: (not n.startswith("ALL"), n)):
        n, hit = stats[name]
        print(f"| {name} | {n} | {hit / n:.1%} ({hit}) |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(TL.DEFAULT_CORPUS))
    ap.add_argument("--out", default=str(DEFAULT_PATH))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.corpus).is_file():
        ap.error(f"no corpus at {args.corpus}: give --corpus PATH (labelled JSON lines: text, label, category)")
    started = time.perf_counter()

    # Fold models of the learned detector, so no corpus text is scored by a model that saw it.
    norm, norm_name = TL.normalizer()
    l_train, _, synthetic = TL.load_training(args.corpus)
    models, _, shift = TL.fit_out_of_fold(l_train, TL.training_rows(l_train, synthetic, norm), FOLDS)
    fold_detectors = [TL.to_detector(w, b + shift, norm_name) for w, b in models]
    shipped = LearnedDetector.load()
    print(f"fold models ready ({time.perf_counter() - started:.0f}s)", file=sys.stderr)

    engine = Engine(load_rules(default_rules_dir()))
    train_items: list[tuple[Example, list[Finding], int]] = []  # (text, findings, fold or -1)
    held_items: list[tuple[Example, list[Finding]]] = []
    for ex in read_jsonl(args.corpus):
        if is_heldout(ex.text):
            held_items.append((ex, scan(engine, shipped, ex.text)))
        else:
            k = fold_of(ex.text, FOLDS)
            train_items.append((ex, scan(engine, fold_detectors[k], ex.text), k))
    naive_ids = sorted(r.id for r in engine.rules if r.threat in ("prompt_injection", "data_exfiltration"))
    for i, ex in enumerate(synthetic):
        found = scan(engine, shipped, ex.text)
        if not ex.is_attack and not found:
            found = naive_finding(ex.text, naive_ids[i % len(naive_ids)]) if naive_ids else []
        train_items.append((ex, found, -1))

    pairs = [(f, int(not ex.is_attack), k) for ex, fs, k in train_items for f in fs]
    corpus_pairs = [(f, fp) for f, fp, k in pairs if k >= 0]
    fold_tables = {k: precision_table([(f, fp) for f, fp, kk in pairs if kk >= 0 and kk != k])
                   for k in range(-1, FOLDS)}
    table, base = precision_table(corpus_pairs)

    X: list[dict[str, float]] = []
    y: list[int] = []
    wt: list[float] = []
    for ex, fs, k in train_items:
        if not fs:
            continue
        prec, pbase = fold_tables[k]
        scorer = FPScorer({n: 0.0 for n in FEATURES}, 0.0, {}, prec, pbase)
        for x in scorer.features(fs, {"text": ex.text}, ScoreContext()):
            X.append(x)
            y.append(int(not ex.is_attack))
            wt.append(SYNTHETIC_WEIGHT if k < 0 else 1.0)
    coef, intercept, notes = fit_constrained(X, y, wt)
    reference = {n: sum(x[n] for x in X) / len(X) for n in FEATURES}
    model = FPScorer(coef, intercept, reference, table, base)
    for note in notes:
        print("note:", note, file=sys.stderr)

    # Held-out calibration: shipped learned model, shipped precision table.
    held_pairs: list[tuple[float, int]] = []
    for ex, fs in held_items:
        if fs:
            model.score(fs, {"text": ex.text})
            held_pairs += [(f.fp_probability or 0.0, int(not ex.is_attack)) for f in fs]
    table_rows = reliability(held_pairs)
    brier = sum((p - t) ** 2 for p, t in held_pairs) / max(1, len(held_pairs))
    print(f"\ntraining rows {len(X)} (FP {sum(y)}), held-out findings {len(held_pairs)} "
          f"(FP {sum(t for _, t in held_pairs)}), Brier {brier:.4f}\n")
    print("| predicted FP probability | findings | mean predicted | observed FP rate |")
    print("|---|---:|---:|---:|")
    for r in table_rows:
        print(f"| {r['bin']} | {r['n']} | {r['mean_predicted']:.3f} | {r['observed_fp_rate']:.3f} |")
    print("\n| feature | coefficient |\n|---|---:|")
    for n in FEATURES:
        print(f"| {n}{' (fixed prior)' if n in FIXED else ''} | {coef[n]:+.3f} |")

    decision_report(train_items, held_items, model, fold_tables)

    doc = {
        "format": 1,
        "model": "logistic regression, P(finding is a false positive)",
        "features": list(FEATURES),
        "coef": {n: round(coef[n], 6) for n in FEATURES},
        "intercept": round(intercept, 6),
        "reference": {n: round(v, 6) for n, v in reference.items()},
        "fixed_priors": list(FIXED),
        "rule_precision": {k: round(v, 4) for k, v in sorted(table.items())},
        "default_precision": round(base, 4),
        "calibration_heldout": {"bins": table_rows, "brier": round(brier, 5), "findings": len(held_pairs)},
        "meta": {"ridge": RIDGE, "smoothing": SMOOTHING, "folds": FOLDS, "prior": PRIOR, "notes": notes,
                 "split": "llm_firewall.score.corpus.is_heldout", "training_rows": len(X)},
    }
    if not args.no_write:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    check = FPScorer.load(args.out) if not args.no_write else model
    canon = "How do I ignore errors in my Python code?"
    fs = scan(engine, shipped, canon)
    check.score(fs, {"text": canon})
    print(f"\n{canon!r}: {[(f.rule_id, f.fp_probability) for f in fs] or 'no finding'}", file=sys.stderr)
    print(f"done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
