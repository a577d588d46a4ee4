"""Who is asking: forwarding headers believed only from trusted proxies, keys never kept in clear."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st
from multidict import CIMultiDict

from llm_firewall.domain import Identity
from llm_firewall.enforce.identity import (client_ip, identify, is_allowlisted, parse_networks, subject_for,
                                           trust_of)
from llm_firewall.policy.model import IdentityConfig, load_policy
from llm_firewall.redact import key_fingerprint

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])
XFF = "x-forwarded-for"


@pytest.mark.parametrize(
    "peer, headers, expected, header",
    [
        ("198.51.100.1", {"X-Forwarded-For": "1.2.3.4"}, "198.51.100.1", XFF),  # untrusted peer: header ignored
        ("10.0.0.5", {"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4", XFF),
        ("10.0.0.5", {"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.9"}, "1.2.3.4", XFF),  # spoofed left part ignored
        ("10.0.0.5", {"x-forwarded-for": "10.0.0.7, 10.0.0.9"}, "10.0.0.7", XFF),  # all trusted: the farthest
        ("10.0.0.5", {"X-Forwarded-For": "garbage, 10.0.0.9"}, "10.0.0.9", XFF),  # malformed hop stops the walk
        ("10.0.0.5", {}, "10.0.0.5", XFF),
        # Only the configured header is believed: a client's Forwarded never decides under XFF.
        ("10.0.0.5", {"Forwarded": "for=10.111.0.2", "X-Forwarded-For": "203.0.113.9"}, "203.0.113.9", XFF),
        ("10.0.0.5", {"Forwarded": "for=10.111.0.2"}, "10.0.0.5", XFF),
        ("10.0.0.5", {"X-Real-IP": "10.111.0.2", "X-Forwarded-For": "203.0.113.9"}, "203.0.113.9", XFF),
        ("10.0.0.5", {"Forwarded": 'for="[2001:db8::1]:4711";proto=https, for=10.0.0.9'}, "2001:db8::1", "forwarded"),
        ("10.0.0.5", {"Forwarded": "for=192.0.2.60:8080", "X-Forwarded-For": "6.6.6.6"}, "192.0.2.60", "forwarded"),
        ("10.0.0.5", {"Forwarded": "for=6.6.6.6, proto=https"}, "10.0.0.5", "forwarded"),  # a hop without for=
        ("10.0.0.5", {"Forwarded": "for=_hidden, for=192.0.2.61"}, "192.0.2.61", "forwarded"),
        ("10.0.0.5", {"X-Forwarded-For": "6.6.6.6"}, "10.0.0.5", "forwarded"),
        ("10.0.0.5", {"X-Real-IP": "192.0.2.62", "X-Forwarded-For": "6.6.6.6"}, "192.0.2.62", "x-real-ip"),
        ("::ffff:10.0.0.5", {"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4", XFF),  # v4-mapped peer
        ("fd00::1", {"X-Forwarded-For": "2001:db8::2"}, "2001:db8::2", XFF),
    ],
)
def test_client_ip(peer, headers, expected, header):
    assert client_ip(peer, headers, trust_of(PROXIES, header)) == expected


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_ip("10.0.0.5", {"X-Forwarded-For": "1.2.3.4"}, ()) == "10.0.0.5"


def test_repeated_forwarded_headers_are_read_in_order():
    headers = CIMultiDict([("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "10.0.0.8")])
    assert client_ip("10.0.0.5", headers, PROXIES) == "1.2.3.4"


def test_identify_hashes_the_key_and_reads_configured_headers():
    cfg = IdentityConfig(user_header="x-end-user", trusted_proxies=("10.0.0.0/8",))
    headers = {"Authorization": "Bearer sk-test-abcdefghijklmnop", "X-End-User": " bob ",
               "X-Session-ID": "s9", "X-Agent-ID": "crawler", "X-Forwarded-For": "1.2.3.4"}
    ident = identify("10.1.1.1", headers, cfg)
    assert ident.ip == "1.2.3.4"  # the policy's trusted proxies count
    assert ident.api_key_hash.startswith("key:") and "abcdefghijklmnop" not in repr(ident)
    # Ids the client merely names are scoped to its key: another key's bob is someone else.
    scope = ident.api_key_hash
    assert (ident.user, ident.session, ident.agent) == (f"bob@{scope}", f"s9@{scope}", f"crawler@{scope}")
    assert identify("10.1.1.1", {"Authorization": "Bearer sk-test-abcdefghijklmnop"}, cfg).api_key_hash == ident.api_key_hash


def test_identify_bounds_hostile_header_values():
    ident = identify("192.0.2.1", {"X-User-ID": "u" * 5000, "X-Session-ID": "\x00\x1b[31m", "Authorization": "Basic abc"}, IdentityConfig())
    assert ident.user.startswith("h:") and ident.user.endswith("@192.0.2.1") and len(ident.user) < 50
    assert ident.session == "[31m@192.0.2.1" and ident.api_key_hash is None


def test_allowlist_by_range_and_user_pattern(tmp_path):
    (tmp_path / "p.yaml").write_text("name: p\nallowlist: {ips: [127.0.0.0/8, '::1'], users: ['svc-*']}\n")
    p = load_policy("p", tmp_path)
    assert is_allowlisted(Identity(ip="127.0.0.2"), p)
    assert is_allowlisted(Identity(ip="::1"), p)
    assert is_allowlisted(Identity(ip="203.0.113.1", user="svc-backup"), p)
    assert not is_allowlisted(Identity(ip="203.0.113.1", user="alice"), p)
    assert not is_allowlisted(Identity(ip="203.0.113.1"), load_policy("production"))


def test_rate_limit_subjects():
    full = Identity(ip="1.2.3.4", api_key_hash="key:abc", user="u", session="s")
    assert subject_for(full, "client") == "user:u"
    assert subject_for(Identity(ip="1.2.3.4", api_key_hash="key:abc"), "client") == "key:abc"
    assert subject_for(Identity(ip="1.2.3.4"), "client") == "ip:1.2.3.4"
    assert subject_for(full, "session") == "session:s"
    assert subject_for(Identity(ip="1.2.3.4"), "session") == "ip:1.2.3.4"


def _retained_mib(run) -> float:
    """Memory still allocated after `run()` (what caches kept), in MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / 2**20
    finally:
        tracemalloc.stop()


def test_long_forwarding_chains_and_api_keys_written_by_clients_are_not_kept() -> None:
    """Identity lookups are cached per chain and per key; a client writing a new 8 KB header on
    every request must not make those caches hold 8 KB a request (was 16 MiB for 2,000)."""
    trusted = parse_networks(["127.0.0.1/32"])
    config = IdentityConfig()

    def requests() -> None:
        for n in range(2000):
            filler = f"{n:08d}" * 1000  # 8,000 characters, new on every request
            chain = f"{filler}, 203.0.113.{n % 250}"
            assert client_ip("127.0.0.1", {"X-Forwarded-For": chain}, trusted) == f"203.0.113.{n % 250}"
            who = identify("192.0.2.1", {"Authorization": f"Bearer sk-{filler}"}, config)
            assert who.api_key_hash == key_fingerprint(f"sk-{filler}")

    assert _retained_mib(requests) < 2.0


_HOPS = st.one_of(
    st.sampled_from(["1.2.3.4", "10.0.0.9", " 10.1.2.3 ", "10.0.0.9:8080", "[fd00::1]:443", "fd00::2",
                     "2001:db8::1", "::ffff:10.0.0.7", "01.2.3.4", "256.1.1.1", "unknown", "", " ",
                     '"10.0.0.3"', "_hidden", "1.2.3.4, 10.0.0.9"]),
    st.ip_addresses().map(str),
)


@settings(max_examples=400, deadline=None)
@given(peer=st.sampled_from(["10.0.0.5", "198.51.100.1", "fd00::5", "::ffff:10.0.0.5", "", "bad"]), hop=_HOPS)
def test_one_forwarding_hop_resolves_as_a_chain_does(peer: str, hop: str) -> None:
    """The single-hop shortcut gives what the general walk gives (a trailing empty hop, which the
    walk skips, forces the general path)."""
    assert client_ip(peer, {"X-Forwarded-For": hop}, PROXIES) == \
        client_ip(peer, {"X-Forwarded-For": hop + ","}, PROXIES)
