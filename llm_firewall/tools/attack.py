"""`llm-firewall attack --target URL [--scenario NAME] [--api-key K]`: run the attack scenarios.

Sends the scripted messages of `scenario_catalog` through any running firewall with the `openai`
SDK, exactly as a client application would, and prints what happened to each one. Every
scenario speaks as its own user and session (X-User-ID / X-Session-ID) so one scenario's
sanctions do not spill into the next. Sanctions on the client address fall on the address the
firewall sees: this host, unless the firewall trusts it as a proxy, in which case the synthetic
X-Forwarded-For address sent with each scenario is used instead.

Exit status: 0 when every attack message was stopped, 1 when at least one got through (or
errored), 2 for bad arguments or an unreachable target.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TextIO

from llm_firewall.tools import scenario_catalog
from llm_firewall.tools.scenario_catalog import Scenario

DEFAULT_MODEL = "demo-mini"


@dataclass(frozen=True)
class Result:
    scenario: str
    index: int
    message: str
    attack: bool
    outcome: str  # one of scenario_catalog.OUTCOMES
    status: int | None
    code: str | None
    retry_after: str | None = None


def _client(target: str, api_key: str, headers: dict[str, str], timeout: float):  # -> openai.OpenAI
    import openai

    return openai.OpenAI(base_url=target.rstrip("/") + "/v1", api_key=api_key, max_retries=0,
                         timeout=timeout, default_headers=headers)


def run_scenario(scenario: Scenario, target: str, api_key: str, *, model: str = DEFAULT_MODEL,
                 timeout: float = 30.0, run_id: str | None = None, client_ip: str | None = None,
                 forwarded_header: str = "X-Forwarded-For") -> list[Result]:
    """Send one scenario's messages in order, from one user and session; never raises for HTTP errors."""
    import openai

    run_id = run_id or secrets.token_hex(3)
    headers = {"X-User-ID": f"attack-{scenario.name}-{run_id}", "X-Session-ID": f"attack-{run_id}-{scenario.name}"}
    if client_ip:
        headers[forwarded_header] = f'for="{client_ip}"' if forwarded_header.lower() == "forwarded" else client_ip
    client = _client(target, api_key, headers, timeout)
    out: list[Result] = []
    for i, step in enumerate(scenario.steps, start=1):
        try:
            reply = client.chat.completions.create(model=model,
                                                   messages=[{"role": "user", "content": step.message}])
            reason = reply.choices[0].finish_reason if reply.choices else None
            outcome = "filtered" if reason == "content_filter" else "allowed"
            out.append(Result(scenario.name, i, step.message, step.attack, outcome, 200, reason))
        except openai.APIStatusError as exc:
            code = getattr(exc, "code", None)
            outcome = ("blocked" if exc.status_code == 400 and code == "content_policy_violation"
                       else "refused" if exc.status_code in (403, 429) else "error")
            out.append(Result(scenario.name, i, step.message, step.attack, outcome, exc.status_code,
                              code, exc.response.headers.get("retry-after")))
        except openai.APIConnectionError as exc:
            out.append(Result(scenario.name, i, step.message, step.attack, "error", None,
                              type(exc).__name__))
    client.close()
    return out


def format_table(results: list[Result]) -> str:
    """A plain-text table: scenario, step, message excerpt, outcome, HTTP status/code."""
    rows = [("SCENARIO", "#", "MESSAGE", "KIND", "OUTCOME", "HTTP")]
    for r in results:
        http = "-" if r.status is None else str(r.status)
        if r.code:
            http += f" {r.code}"
        if r.retry_after:
            http += f" (retry after {r.retry_after}s)"
        rows.append((r.scenario, str(r.index), scenario_catalog.excerpt(r.message, 52),
                     "attack" if r.attack else "benign", r.outcome, http))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        # the last cell is not padded
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


def summarise(results: list[Result]) -> list[str]:
    lines = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        attacks = [r for r in mine if r.attack]
        stopped = sum(1 for r in attacks if r.outcome in ("blocked", "refused", "filtered"))
        lines.append(f"{name}: {stopped}/{len(attacks)} attack messages stopped")
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-firewall attack", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="firewall base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--scenario", action="append", choices=list(scenario_catalog.SCENARIOS),
                   help="run only this scenario (repeatable; default: all)")
    p.add_argument("--api-key", default="sk-llm-firewall-attack-demo",
                   help="API key sent to the firewall (the embedded demo model needs none)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--client-ip", default=None,
                   help="X-Forwarded-For to send (honoured only if the firewall trusts this host as a proxy); "
                        "default: a synthetic 198.18.x.y address per scenario")
    p.add_argument("--admin-token", default=os.environ.get("LLM_FIREWALL_ADMIN_TOKEN"),
                   help="to ask the firewall which address it sees (default: LLM_FIREWALL_ADMIN_TOKEN)")
    p.add_argument("--yes", action="store_true",
                   help="run even when the firewall would sanction this host's own address")
    return p


def whoami(target: str, token: str | None, timeout: float) -> dict[str, object] | None:
    """What the firewall makes of a request from here (GET /api/whoami): the address it sees and
    whether it believes this host's forwarding header; {} when it may not be asked, None when
    it cannot be reached."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(target.rstrip("/") + "/api/whoami", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            found = json.loads(answer.read())
            return found if isinstance(found, dict) else {}
    except (urllib.error.HTTPError, ValueError):  # answered, but not this (no admin rights, say)
        return {}
    except OSError:
        return None


def _may_sanction_this_host(args: argparse.Namespace, seen: dict[str, object]) -> bool:
    """Whether to run when the sanctions may land on this host. Each scenario claims a synthetic
    address in the forwarding header; a firewall that does not trust this host as a proxy holds
    its own address answerable instead (users and sessions are scoped to it, the exfiltration
    scenario blocks it), which would lock this host out. Then run only if the operator says so."""
    if args.yes or args.client_ip or seen.get("peer_is_trusted_proxy"):
        return True
    who = f"this host's address ({seen['ip']})" if seen.get("ip") else "the address the firewall sees for this host"
    if sys.stdin is not None and sys.stdin.isatty():
        question = (f"The firewall does not trust this host as a proxy, so the scenarios' sanctions (user "
                    f"suspensions, an IP block) would fall on {who} and lock it out. Run anyway? [y/N] ")
        return input(question).strip().lower() in ("y", "yes")
    print(f"llm-firewall attack: not run: the firewall does not trust this host as a proxy, so the "
          f"scenarios' sanctions would fall on {who} and lock it out. Add it to LLM_FIREWALL_TRUSTED_PROXIES "
          "so the synthetic addresses are used, or pass --yes.", file=sys.stderr)
    return False


def main(argv: list[str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if not args.target.startswith(("http://", "https://")):
        print("llm-firewall attack: --target must be an http(s) URL", file=sys.stderr)
        return 2
    names = scenario_catalog.run_order(args.scenario or list(scenario_catalog.SCENARIOS))
    run_id = secrets.token_hex(3)
    subnet = secrets.randbelow(256)  # 198.18.0.0/15 is reserved for testing; a new /24 per run
    seen = whoami(args.target, args.admin_token, args.timeout)
    if seen is None:
        print(f"llm-firewall attack: cannot reach {args.target}", file=sys.stderr)
        return 2
    if not _may_sanction_this_host(args, seen):
        return 2
    header = str(seen.get("forwarded_header") or "X-Forwarded-For")
    results: list[Result] = []
    for n, name in enumerate(names):
        ip = args.client_ip or f"198.18.{subnet}.{n + 1}"
        results += run_scenario(scenario_catalog.get(name), args.target, args.api_key, model=args.model,
                                timeout=args.timeout, run_id=run_id, client_ip=ip, forwarded_header=header)
        if results and all(r.outcome == "error" and r.status is None for r in results):
            print(f"llm-firewall attack: cannot reach {args.target} ({results[0].code})", file=sys.stderr)
            return 2
    print(format_table(results), file=out)
    print("", file=out)
    for line in summarise(results):
        print(line, file=out)
    if any(r.code == "ip_blocked" for r in results):
        print("\nnote: the firewall blocked the address it sees for this client. If that is this host (the "
              "firewall does not trust it as a proxy, so X-Forwarded-For was ignored), lift it with "
              "DELETE /api/blocks/ip/<address> or the demo page's Active sanctions list.", file=out)
    missed = [r for r in results if r.attack and r.outcome in ("allowed", "error")]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
