"""The guard API on two replicas sharing one Redis: the sanctions and limits its calls earn on
one replica hold on the other, for guard calls, dry runs and proxied requests alike."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from llm_firewall.tools import scenario_catalog
from tests.redis.replicas import ADMIN, BENIGN, chat, code, start_pair, write_policy
from tests.support.firewall import Firewall

ATTACK = next(c.message for c in scenario_catalog.SEED if c.name == "prompt_injection")


@pytest.fixture(scope="module")
def replicas(redis_server, upstream, tmp_path_factory) -> Iterator[tuple[Firewall, Firewall]]:
    tmp = tmp_path_factory.mktemp("guard-replicas")
    policy = write_policy(tmp / "guarded.yaml", "guarded", limit=50)
    yield from start_pair(redis_server.url, upstream.base_url, tmp, policy, policy)


def guard(fw: Firewall, text: str, identity: dict[str, str], dry_run: bool = False) -> dict[str, Any]:
    body = {"body": {"model": "m", "messages": [{"role": "user", "content": text}]}, "identity": identity,
            "dry_run": dry_run}
    req = urllib.request.Request(f"{fw.url}/api/guard", data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_suspension_earned_on_a_is_enforced_on_b(replicas: tuple[Firewall, Firewall]) -> None:
    a, b = replicas
    who = {"user": "guard-redis-user", "ip": "203.0.113.91"}
    for _ in range(3):  # the production ladder: three prompt-injection strikes suspend the user
        assert guard(a, ATTACK, who)["decision"] == "block"
    for dry_run in (False, True):
        verdict = guard(b, BENIGN, who, dry_run=dry_run)
        assert verdict["decision"] == "refuse", verdict
        assert verdict["action"]["code"] == "user_suspended"
    assert guard(b, BENIGN, {**who, "user": "another-user"})["decision"] == "allow"


def test_a_critical_verdict_on_a_blocks_the_address_for_the_proxy_on_b(replicas: tuple[Firewall, Firewall]) -> None:
    a, b = replicas
    exfil = next(c.message for c in scenario_catalog.SEED if c.name == "data_exfiltration")
    ip = "203.0.113.92"
    assert chat(b, BENIGN, ip)[0] == 200
    verdict = guard(a, exfil, {"user": "guard-redis-exfil", "session": "s-1", "ip": ip})
    assert verdict["decision"] == "block"
    assert "block_ip" in [x["action"] for x in verdict["actions_taken"]], verdict["actions_taken"]
    refused = chat(b, BENIGN, ip, "s-other")
    assert refused[0] == 403 and code(refused) == "ip_blocked"
