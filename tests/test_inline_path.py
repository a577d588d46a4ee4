"""The shortcuts of the inline path give the same answers as the general path they bypass."""

from __future__ import annotations

from pathlib import Path

from llm_firewall.audit import AuditLog
from llm_firewall.domain import Identity
from llm_firewall.enforce.actions import Enforcer
from llm_firewall.enforce.identity import client_ip, parse_networks
from llm_firewall.enforce.memory_store import MemoryStore
from llm_firewall.enforce.state import Sanction
from llm_firewall.policy.model import load_policy

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])
T0 = 1_700_000_000.0


def test_dotted_quad_hops_resolve_like_any_other_address():
    assert client_ip("127.0.0.1", {"X-Forwarded-For": "198.18.3.7"}, PROXIES) == "198.18.3.7"
    assert client_ip("127.0.0.1", {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}, PROXIES) == "203.0.113.9"
    assert client_ip("127.0.0.1", {"X-Forwarded-For": " 203.0.113.9:443 "}, PROXIES) == "203.0.113.9"
    # a hop with leading zeros is not an address: the walk stops at the proxy that vouched last
    assert client_ip("127.0.0.1", {"X-Forwarded-For": "010.1.2.3, 10.9.9.9"}, PROXIES) == "10.9.9.9"
    # an untrusted peer's forwarding header is ignored
    assert client_ip("192.0.2.5", {"X-Forwarded-For": "198.18.3.7"}, PROXIES) == "192.0.2.5"


async def test_inline_check_refuses_like_the_async_check(tmp_path: Path):
    store, audit = MemoryStore(None), AuditLog(None)
    now = [T0]
    enforcer = Enforcer(store, audit, clock=lambda: now[0])
    policy = load_policy("production")
    assert enforcer.inline
    await store.add_sanction(Sanction("user", "mallory", "test", T0, T0 + 60))
    mallory = Identity(ip="198.51.100.7", user="mallory")
    assert enforcer.check_now(mallory, policy) == await enforcer.check(mallory, policy)
    assert enforcer.check_now(mallory, policy).code == "user_suspended"
    now[0] = T0 + 61  # expired
    assert enforcer.check_now(mallory, policy) is None
    limit = max(rl.limit for rl in policy.rate_limits)
    alice = Identity(ip="198.51.100.8", user="alice")
    codes = {getattr(enforcer.check_now(alice, policy), "code", None) for _ in range(limit + 1)}
    assert "rate_limit_exceeded" in codes
    await store.close(), await audit.close()
