"""The `llm-firewall` command: serve | scan | rules | eval | attack | bench | schema."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson


def _serve(args: argparse.Namespace) -> int:
    from llm_firewall import decision_log
    from llm_firewall.app import create_app
    from llm_firewall.config import ConfigError, from_env, upstream_loops_back
    from llm_firewall.logs import setup_logging
    from llm_firewall.proxy.forward import without_credentials
    from llm_firewall.redact import redact_secrets
    from llm_firewall.server import serve

    try:
        settings = from_env()
    except ConfigError as exc:
        print(f"llm-firewall: {redact_secrets(str(exc))}", file=sys.stderr)
        return 2
    settings = settings.with_overrides(
        host=args.host, port=args.port, upstream_url=args.upstream.rstrip("/") if args.upstream else None,
        policy=args.policy, rules_dir=Path(args.rules_dir) if args.rules_dir else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        policies_dir=Path(args.policies_dir) if args.policies_dir else None,
        log_format=args.log_format, workers=args.workers)
    setup_logging(settings.log_format, settings.log_level, access_log=settings.access_log)
    decision_log.setup(settings.decision_log)
    if settings.upstream_url and upstream_loops_back(settings.upstream_url, settings.host, settings.port):
        print(f"llm-firewall: the upstream {without_credentials(settings.upstream_url)} is this firewall itself "
              f"(it listens on {settings.host}:{settings.port}): every request would come back to it. Set "
              "LLM_FIREWALL_UPSTREAM_URL (or --upstream) to the real API; OPENAI_BASE_URL is what clients "
              "use to reach the firewall.", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from llm_firewall import workers

        problem = workers.check(settings)
        if problem is None:
            print(f"llm-firewall: {settings.workers} workers on http://{settings.host}:{settings.port}",
                  file=sys.stderr, flush=True)
            try:
                return workers.run(settings, sys.argv[1:])
            except workers.WorkersError as exc:
                problem = str(exc)
        print(f"llm-firewall: {problem}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ValueError as exc:  # a bad rule or policy file: one clear line, no traceback
        print(f"llm-firewall: {redact_secrets(str(exc))}", file=sys.stderr)
        return 2
    where = without_credentials(settings.upstream_url) if settings.upstream_url else "the embedded demo model"
    print(f"llm-firewall listening on http://{settings.host}:{settings.port} -> {where}", file=sys.stderr, flush=True)
    serve(app, settings)
    return 0


def _read_jsonl(source: str) -> Iterator[dict[str, Any]]:
    stream: TextIO = sys.stdin if source == "-" else open(source, encoding="utf-8")
    try:
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise SystemExit(f"llm-firewall scan: {source}:{lineno}: not JSON ({exc})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise SystemExit(f"llm-firewall scan: {source}:{lineno}: needs an object with a string 'text'")
            yield record
    finally:
        if stream is not sys.stdin:
            stream.close()


def _scan(args: argparse.Namespace) -> int:
    from llm_firewall.domain import Identity, TextItem
    from llm_firewall.inspector import Inspector
    from llm_firewall.policy.decide import decide
    from llm_firewall.policy.model import load_policy

    try:  # a broken policy or rule file: one line naming file, line and field, no traceback
        policy = load_policy(args.policy, Path(args.policies_dir) if args.policies_dir else None)
        local = tuple(Path(d) for d in args.local_rules_dir)
        inspector = Inspector.load(Path(args.rules_dir) if args.rules_dir else None,
                                   overrides=policy.rule_overrides, local_rules_dirs=local)
    except ValueError as exc:
        print(f"llm-firewall scan: {exc}", file=sys.stderr)
        return 2
    identity = Identity(ip="0.0.0.0")
    out = sys.stdout

    def verdict(text: str, role: str) -> dict[str, Any]:
        started = time.perf_counter()
        findings = inspector.inspect([TextItem(text, role, "text")], "request")
        decision = decide(policy, findings, identity) if findings else None
        blocked = bool(decision and (decision.blocked or (policy.mode == "monitor" and decision.would_block)))
        return {"blocked": blocked,
                "threats": [{"threat": f.threat, "severity": f.severity, "rule_id": f.rule_id,
                             "fp_probability": None if f.fp_probability is None else round(f.fp_probability, 4)}
                            for f in findings],
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}

    if args.jsonl:
        for record in _read_jsonl(args.jsonl):
            result = {**record, **verdict(record["text"], str(record.get("role") or "user"))}
            out.write(orjson.dumps(result).decode() + "\n")
        out.flush()
        return 0
    if not args.text:
        print("llm-firewall scan: give TEXT or --jsonl FILE|-", file=sys.stderr)
        return 2
    blocked = False
    for text in args.text:  # one JSON line per text, as --jsonl gives
        result = {"text": text, **verdict(text, args.role)}
        blocked = blocked or result["blocked"]
        out.write(orjson.dumps(result).decode() + "\n")
    return 1 if blocked else 0


_DELEGATED = {
    "rules": ("llm_firewall.detect.lint", "lint or test rule files: rules lint|test [DIR]"),
    "eval": ("llm_firewall.tools.evaluate", "measure detection on a labelled JSONL corpus"),
    "attack": ("llm_firewall.tools.attack", "run attack scenarios against a running firewall"),
    "bench": ("benchmarks.bench", "measure throughput and latency against a baseline proxy (source checkout)"),
    "schema": ("llm_firewall.schema.cli", "print the JSON Schema of rule or policy files: schema rules|policy"),
}


def _find_benchmarks() -> bool:
    """Make benchmarks/ of the source checkout holding this package importable, or explain.

    The bench (mock upstream, minimal proxy, wrk scripts) is not part of the installed package,
    so `llm-firewall bench` runs it from the checkout next to the package."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "bench.py").is_file():
        print("llm-firewall bench: the benchmark is not part of the installed package; it needs a source "
              "checkout (git clone the repository, then `pip install -e .` there and run it again)",
              file=sys.stderr)
        return False
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return True


def _worker_count(value: str) -> int:
    from llm_firewall.config import ConfigError, parse_workers

    try:
        return parse_workers(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-firewall", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the firewall proxy")
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument("--upstream", default=None, help="OpenAI-compatible base URL (default: "
                       "LLM_FIREWALL_UPSTREAM_URL, else OPENAI_BASE_URL, else the embedded demo model)")
    serve.add_argument("--policy", default=None, help="preset name or YAML path (default production)")
    serve.add_argument("--policies-dir", default=None)
    serve.add_argument("--rules-dir", default=None)
    serve.add_argument("--data-dir", default=None, help="where sanctions and the audit trail persist")
    serve.add_argument("--log-format", choices=["text", "json"], default=None)
    serve.add_argument("--workers", type=_worker_count, default=None,
                       help="processes serving the port (default 1; 'auto': one per core); more than one "
                            "share state through Redis (a private redis-server when LLM_FIREWALL_REDIS_URL is unset)")
    serve.set_defaults(func=_serve)

    scan = sub.add_parser("scan", help="inspect texts without a server; exit 1 when any is refused")
    scan.add_argument("text", nargs="*", help="texts to inspect, each on its own (one JSON line each)")
    scan.add_argument("--jsonl", default=None, help="JSON lines with a 'text' field (optional 'role'); - for stdin")
    scan.add_argument("--role", default="user")
    scan.add_argument("--policy", default="production")
    scan.add_argument("--policies-dir", default=None)
    scan.add_argument("--rules-dir", default=None)
    scan.add_argument("--local-rules-dir", action="append", default=[],
                      help="a directory layered over the rules (repeatable; as LLM_FIREWALL_RULES_DIRS)")
    scan.set_defaults(func=_scan)

    for name, (_, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench" and not _find_benchmarks():
        return 2
    if argv and argv[0] in _DELEGATED:  # these subcommands parse their own options
        return int(importlib.import_module(_DELEGATED[argv[0]][0]).main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
