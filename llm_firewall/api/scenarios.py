"""`POST /api/test/scenario/{name}` and `GET /api/test/results`: attack scenarios run in-process.

Each run speaks as a fresh synthetic client (an address in 198.51.100.0/24, TEST-NET-2, a user
`scenario-<name>-<n>` and a new session) so the sanctions it provokes fall on that client and
never on the operator who pressed the button. The messages come from `scenario_catalog`, the
same list `llm-firewall attack` sends over HTTP.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

from llm_firewall.api.admin import admin_only
from llm_firewall.appkeys import GATEWAY, STATE
from llm_firewall.domain import Identity
from llm_firewall.proxy.openai_wire import error_body
from llm_firewall.tools import scenario_catalog

KEEP_RUNS = 50
SCENARIO_NET = "198.51.100."

RESULTS: web.AppKey[deque[dict[str, Any]]] = web.AppKey("scenario_results")
COUNTER: web.AppKey[itertools.count[int]] = web.AppKey("scenario_counter")


async def _fresh_identity(request: web.Request, name: str) -> Identity:
    """A client that no active sanction names (sanctions survive restarts, so skip used ones)."""
    taken = {(s.kind, s.key) for s in await request.app[STATE]["store"].list_sanctions(time.time())}
    counter = request.app[COUNTER]
    for _ in range(1000):
        n = next(counter)
        ip = f"{SCENARIO_NET}{n % 254 + 1}"
        user = f"scenario-{name}-{n}"
        if ("ip", ip) not in taken and ("user", user) not in taken:
            break
    return Identity(ip=ip, user=user, session=f"scn-{uuid.uuid4().hex[:12]}", agent=None)


def _outcome(verdict: dict[str, Any]) -> str:
    if verdict.get("refused"):
        return "refused"
    if verdict.get("blocked"):
        return "blocked"
    return "allowed"


def _step(message: str, attack: bool, verdict: dict[str, Any]) -> dict[str, Any]:
    alert = verdict.get("alert") or {}
    return {
        "message": message,
        "attack": attack,
        "outcome": _outcome(verdict),
        "status": verdict.get("status") or 200,
        "code": verdict.get("code"),
        "retry_after": verdict.get("retry_after"),
        "alert_id": alert.get("alert_id"),
        "threat": alert.get("threat_type"),
        "severity": alert.get("severity"),
        "fp_probability": alert.get("fp_probability"),
        "actions": [a.get("action") for a in alert.get("remediation_taken") or [] if a.get("action")],
    }


@admin_only
async def run_scenario(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    rid = request.get("request_id", "-")
    try:
        scenario = scenario_catalog.get(name)
    except KeyError as exc:
        return web.Response(status=404, content_type="application/json", headers={"x-request-id": rid},
                            body=error_body(str(exc.args[0]), code="not_found", param="name"))
    gateway = request.app[GATEWAY]
    identity = await _fresh_identity(request, name)
    started = time.time()
    steps = []
    for i, step in enumerate(scenario.steps):
        verdict = await gateway.analyse_chat([{"role": "user", "content": step.message}], identity,
                                             rid=f"{rid}-{i}")
        steps.append(_step(step.message, step.attack, verdict))
    summary = {
        "run_id": uuid.uuid4().hex[:12],
        "scenario": name,
        "title": scenario.title,
        "time": started,
        "soc_enabled": gateway.soc_enabled,
        "client": {"ip": identity.ip, "user": identity.user, "session": identity.session},
        "steps": steps,
        "total": len(steps),
        "blocked": sum(1 for s in steps if s["outcome"] in ("blocked", "refused")),
        "alerts": sum(1 for s in steps if s["alert_id"]),
    }
    request.app[RESULTS].appendleft(summary)
    return web.json_response(summary, headers={"x-request-id": rid})


@admin_only
async def results(request: web.Request) -> web.Response:
    done = request.app[RESULTS]
    return web.json_response({"results": list(done),
                              "scenarios": [{"name": s.name, "title": s.title, "summary": s.summary,
                                             "steps": len(s.steps)} for s in scenario_catalog.SCENARIOS.values()]})


def setup_routes(app: web.Application) -> None:
    app[RESULTS] = deque(maxlen=KEEP_RUNS)
    # Seeded from the clock so users and strikes persisted by an earlier process are not reused.
    app[COUNTER] = itertools.count(int(time.time()) % 100_000)
    app.router.add_post("/api/test/scenario/{name}", run_scenario)
    app.router.add_get("/api/test/results", results)
