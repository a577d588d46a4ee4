"""Sanctions nobody escapes hold on the shared store too: a new key per offence ends in a suspension
of the address, and an IPv6 client is blocked as its /64, seen by every replica."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.adversarial.test_identity import EXFIL, INJECTION, blocks, chat, code
from tests.conftest import Who, start_firewall
from tests.redis.conftest import RedisServer
from tests.support.firewall import Firewall
from tests.support.upstream import TestUpstream


@pytest.fixture
def replicas(upstream: TestUpstream, redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Firewall, Firewall]]:
    env = {"LLM_FIREWALL_REDIS_URL": f"{redis_server.url}?socket_timeout=2"}
    a = start_firewall(upstream, tmp_path / "a", env=env)
    try:
        b = start_firewall(upstream, tmp_path / "b", env=env)
    except BaseException:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()


def test_key_rotation_and_ipv6_interface_ids_escape_no_replica(replicas: tuple[Firewall, Firewall]) -> None:
    a, b = replicas
    attacker = Who()
    for i, fw in enumerate((a, b, a)):  # offences spread over replicas and invented keys
        invented = [("X-Forwarded-For", attacker.ip), ("Authorization", f"Bearer sk-shared-{attacker.ip}-{i}")]
        assert chat(fw, invented, INJECTION)[0] == 400
    fresh = [("X-Forwarded-For", attacker.ip), ("Authorization", "Bearer sk-shared-fresh")]
    assert code(chat(b, fresh)) == (403, "user_suspended")
    assert f"every user from {attacker.ip}" in {e["subject"] for e in blocks(a)}

    n = attacker.ip.rsplit(".", 1)[1]
    assert chat(a, [("X-Forwarded-For", f"2001:db8:{n}:99::1")], EXFIL)[0] == 400
    assert code(chat(b, [("X-Forwarded-For", f"2001:db8:{n}:99::abcd")])) == (403, "ip_blocked")
    assert chat(b, [("X-Forwarded-For", f"2001:db8:{n}:98::1")])[0] == 200
