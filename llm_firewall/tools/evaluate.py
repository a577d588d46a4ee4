"""`llm-firewall eval CORPUS.jsonl`: how much the firewall catches and how much it bothers.

Runs the full request-side analysis on every text (all rules, the learned detector, the
false-positive scorer) and prints, per category: attacks refused, benign texts refused, the
catch rate at 1 % false positives (threshold sweep over a per-text attack score), and scan
latency; per rule: hits on benign texts. "Refused" is the chosen policy's decision when
llm_firewall.policy is available (monitor-mode policies count what they would block), else a
stable finding of severity >= high with recommendation "block". `--split heldout` keeps only
texts no training script saw (llm_firewall.score.corpus.is_heldout). A row's `role` (user,
system, tool) is the role its text is inspected in; rows in other roles than user get a group.
`--by-source` adds the same figures per corpus source: a detector that learned its sources
rather than the attacks shows it there first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_firewall.domain import SEVERITY_RANK, Finding, Identity
from llm_firewall.score.corpus import PROMPT_ATTACK_TOPS, Example, is_heldout, read_jsonl

TARGET_FP_RATE = 0.01
_EVAL_IDENTITY = Identity(ip="192.0.2.10", user="eval", session="eval")


@dataclass
class Outcome:
    example: Example
    refused: bool
    score: float
    ms: float
    rules: tuple[str, ...] = field(default_factory=tuple)


def attack_score(findings: Sequence[Finding]) -> float:
    """Per-text score for the threshold sweep: the strongest severity-weighted (1 - fp)."""
    best = 0.0
    for f in findings:
        if f.status != "stable":
            continue
        fp = f.fp_probability if f.fp_probability is not None else 0.0
        best = max(best, SEVERITY_RANK.get(f.severity, 0) / 4.0 * (1.0 - fp))
    return best


def default_refused(findings: Sequence[Finding]) -> bool:
    return any(f.status == "stable" and f.rank >= SEVERITY_RANK["high"] and f.recommendation == "block"
               for f in findings)


def _decider(policy_name: str | None) -> tuple[Callable[[list[Finding]], bool], dict, str]:
    """(refusal test, rule overrides, description) for the chosen policy."""
    try:
        from llm_firewall.policy.decide import decide
        from llm_firewall.policy.model import load_policy
    except ImportError:
        return default_refused, {}, "severity >= high and fp < 0.3"
    policy = load_policy(policy_name or "production")

    def refused(findings: list[Finding]) -> bool:
        d = decide(policy, findings, _EVAL_IDENTITY)
        return d.blocked or d.would_block

    return refused, dict(policy.rule_overrides), f"policy {policy.name}"


def _inspector(overrides: dict) -> Callable[[str, str], list[Finding]]:
    """The same composition the proxy and `scan` use (rules + learned detector + scorer)."""
    from llm_firewall.inspector import Inspector

    return Inspector.load(None, overrides=overrides).inspect_text


def threshold_at(benign_scores: list[float], rate: float = TARGET_FP_RATE) -> float:
    """Smallest threshold t such that at most `rate` of benign texts score above t."""
    if not benign_scores:
        return 0.0
    ranked = sorted(benign_scores, reverse=True)
    allowed = int(rate * len(ranked))
    return ranked[allowed] if allowed < len(ranked) else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarise(outcomes: list[Outcome]) -> dict:
    benign_scores = [o.score for o in outcomes if not o.example.is_attack]
    thr = threshold_at(benign_scores)
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        ex = o.example
        groups[ex.top].append(o)
        if ex.sub != ex.top:
            groups[ex.sub].append(o)
        groups["ALL attacks" if ex.is_attack else "ALL benign"].append(o)
        if ex.role != "user":  # texts placed in another role are judged as that role's text
            groups[f"ALL role={ex.role}"].append(o)
        if ex.top in PROMPT_ATTACK_TOPS:
            groups["ALL prompt attacks"].append(o)
    rows = []
    for name in sorted(groups, key=lambda n: (not n.startswith("ALL"), n)):
        items = groups[name]
        attacks = [o for o in items if o.example.is_attack]
        benign = [o for o in items if not o.example.is_attack]
        lat = [o.ms for o in items]
        rows.append({
            "category": name,
            "texts": len(items),
            "attacks": len(attacks),
            "benign": len(benign),
            "attacks_refused": sum(o.refused for o in attacks) / len(attacks) if attacks else None,
            "benign_refused": sum(o.refused for o in benign) / len(benign) if benign else None,
            "catch_at_1pct_fp": sum(o.score > thr for o in attacks) / len(attacks) if attacks else None,
            "p50_ms": round(_pct(lat, 0.5), 3),
            "p99_ms": round(_pct(lat, 0.99), 3),
        })
    hits: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        for rule in set(o.rules):
            hits[rule]["attack" if o.example.is_attack else "benign"] += 1
    n_benign = len(benign_scores)
    rules = [{"rule_id": r, "benign_hits": c["benign"], "benign_hit_rate": c["benign"] / n_benign if n_benign else None,
              "attack_hits": c["attack"]} for r, c in sorted(hits.items(), key=lambda kv: (-kv[1]["benign"], kv[0]))]
    return {"threshold_at_1pct_fp": thr, "categories": rows, "rules": rules}


def by_source(outcomes: list[Outcome]) -> list[dict]:
    """Per corpus source (and overall): attacks refused, benign refused and their counts."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.example.source or "(no source)"].append(o)
        groups["ALL"].append(o)
    rows = []
    for name in sorted(groups, key=lambda n: (n != "ALL", n)):
        attacks = [o for o in groups[name] if o.example.is_attack]
        benign = [o for o in groups[name] if not o.example.is_attack]
        caught = sum(o.refused for o in attacks)
        refused = sum(o.refused for o in benign)
        rows.append({
            "source": name, "texts": len(groups[name]), "attacks": len(attacks), "benign": len(benign),
            "attacks_caught": caught, "benign_refused_count": refused,
            "attacks_refused": caught / len(attacks) if attacks else None,
            "benign_refused": refused / len(benign) if benign else None,
        })
    return rows


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def render_md(result: dict) -> str:
    out = [f"# llm-firewall eval: {result['corpus']} (split: {result['split']}, {result['decision']})", "",
           f"{result['texts']} texts; catch-rate threshold at 1 % false positives: "
           f"{result['threshold_at_1pct_fp']:.3f}", "",
           "| category | texts | attacks refused | benign refused | catch @1% FP | p50 ms | p99 ms |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["categories"]:
        out.append(f"| {r['category']} | {r['texts']} | {_fmt(r['attacks_refused'])} | {_fmt(r['benign_refused'])} | "
                   f"{_fmt(r['catch_at_1pct_fp'])} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    out += ["", "| rule | hits on benign | benign hit rate | hits on attacks |", "|---|---:|---:|---:|"]
    for r in result["rules"]:
        out.append(f"| {r['rule_id']} | {r['benign_hits']} | {_fmt(r['benign_hit_rate'])} | {r['attack_hits']} |")
    if "sources" in result:
        out += ["", render_sources(result["sources"])]
    return "\n".join(out) + "\n"


def render_sources(rows: list[dict]) -> str:
    """The per-source table as markdown (shared with the leave-one-source-out script)."""
    out = ["| source | texts | attacks refused | benign refused |", "|---|---:|---:|---:|"]
    for r in rows:
        caught = f"{_fmt(r['attacks_refused'])} ({r['attacks_caught']}/{r['attacks']})" if r["attacks"] else "–"
        refused = f"{_fmt(r['benign_refused'])} ({r['benign_refused_count']}/{r['benign']})" if r["benign"] else "–"
        out.append(f"| {r['source']} | {r['texts']} | {caught} | {refused} |")
    return "\n".join(out)


def evaluate(examples: list[Example], policy: str | None = None, sources: bool = False) -> dict:
    refused_fn, overrides, description = _decider(policy)
    inspect = _inspector(overrides)
    outcomes = []
    for ex in examples:
        t0 = time.perf_counter()
        findings = inspect(ex.text, ex.role)
        ms = (time.perf_counter() - t0) * 1000.0
        outcomes.append(Outcome(ex, refused_fn(findings), attack_score(findings), ms,
                                tuple(f.rule_id for f in findings)))
    result = summarise(outcomes)
    if sources:
        result["sources"] = by_source(outcomes)
    result["decision"] = description
    result["texts"] = len(outcomes)
    return result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="llm-firewall eval", description=__doc__.split("\n")[0])
    ap.add_argument("corpus", help="JSON lines with text, label (attack|benign), category")
    ap.add_argument("--policy", default=None, help="policy preset or file (default: production)")
    ap.add_argument("--format", choices=("md", "json"), default="md")
    ap.add_argument("--split", choices=("heldout", "all"), default="all",
                    help="heldout: only texts no training script used")
    ap.add_argument("--by-source", action="store_true", help="also report figures per corpus source")
    args = ap.parse_args(argv)
    try:
        examples = [ex for ex in read_jsonl(args.corpus) if args.split == "all" or is_heldout(ex.text)]
    except (OSError, ValueError) as exc:
        print(f"llm-firewall eval: {exc}", file=sys.stderr)
        return 2
    if not examples:
        print(f"llm-firewall eval: {args.corpus}: no texts to evaluate", file=sys.stderr)
        return 2
    try:
        result = evaluate(examples, args.policy, sources=args.by_source)
    except ValueError as exc:  # a broken policy or model file names itself
        print(f"llm-firewall eval: {exc}", file=sys.stderr)
        return 2
    result["corpus"] = args.corpus
    result["split"] = args.split
    if args.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print(render_md(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
