"""Who is asking: forwarding headers believed only from trusted proxies, keys never kept in clear."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st
from multidict import CIMultiDict

from llm_firewall.config import ConfigError, from_env
from llm_firewall.domain import Identity
from llm_firewall.enforce.identity import (client_address, client_ip, identify, is_allowlisted, override_subject, parse_networks,
                                           subject_for, trust_of)
from llm_firewall.policy.decide import address_strike_subject, ladder_subject, strike_subject
from llm_firewall.policy.model import Escalation, IdentityConfig, load_policy
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
        ("10.0.0.5", {"Forwarded": 'for="[2001:db8::1]:4711";proto=https, for=10.0.0.9'}, "2001:db8::/64", "forwarded"),
        ("10.0.0.5", {"Forwarded": "for=192.0.2.60:8080", "X-Forwarded-For": "6.6.6.6"}, "192.0.2.60", "forwarded"),
        ("10.0.0.5", {"Forwarded": "for=6.6.6.6, proto=https"}, "10.0.0.5", "forwarded"),  # a hop without for=
        ("10.0.0.5", {"Forwarded": "for=_hidden, for=192.0.2.61"}, "192.0.2.61", "forwarded"),
        ("10.0.0.5", {"X-Forwarded-For": "6.6.6.6"}, "10.0.0.5", "forwarded"),
        ("10.0.0.5", {"X-Real-IP": "192.0.2.62", "X-Forwarded-For": "6.6.6.6"}, "192.0.2.62", "x-real-ip"),
        ("::ffff:10.0.0.5", {"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4", XFF),  # v4-mapped peer
        ("fd00::1", {"X-Forwarded-For": "2001:db8::2"}, "2001:db8::/64", XFF),  # IPv6: its /64
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


# ---------------------------------------------------------------------------------------------
# Whatever a client writes: the address is the peer or one a trusted proxy wrote, and no sanction
# lands on an id the client merely named.

_CLIENT_HEADERS = ("X-Forwarded-For", "x-forwarded-for", "Forwarded", "X-Real-IP", "X-User-ID", "X-Session-ID",
                   "X-Authenticated-User", "Authorization")
_CLIENT_VALUES = st.one_of(
    _HOPS,
    st.ip_addresses().map(lambda a: f"for={a}" if a.version == 4 else f'for="[{a}]"'),
    st.text(alphabet=st.sampled_from(list('0123456789abcdef.:,;="[] _-forFOR/*@')), max_size=40),
    st.sampled_from(["bob", "*", "bob@10.0.0.9", "Bearer sk-victim-0000", "for=10.111.0.2, for=10.0.0.9"]),
)
_CLIENT_WRITES = st.lists(st.tuples(st.sampled_from(_CLIENT_HEADERS), _CLIENT_VALUES), max_size=8)
_UNTRUSTED = st.ip_addresses().filter(  # a v4-mapped client would be named by its IPv4 form
    lambda a: not any(a.version == n.version and a in n for n in PROXIES) and getattr(a, "ipv4_mapped", None) is None)
_TRUSTED_HOPS = st.lists(st.one_of(st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="fd00::/8")),
                         max_size=3)


def _element(addr, header: str) -> str:
    if header == "forwarded":
        return f"for={addr}" if addr.version == 4 else f'for="[{addr}]:8443"'
    return str(addr)


def _through_proxies(client, written, proxies, header: str, same_line: list[bool]) -> CIMultiDict:
    """The request as the firewall gets it: what the client wrote, then each trusted proxy appends
    its peer's address to the named header (as a new line, or to the last line of it)."""
    headers = CIMultiDict(written)
    for sender, joined in zip([client, *proxies[:-1]], same_line):
        element = _element(sender, header)
        existing = headers.getall(header, [])
        if joined and existing:
            lines = [(k, v) for k, v in headers.items() if k.lower() != header]
            headers = CIMultiDict(lines + [(header, v) for v in existing[:-1]] + [(header, f"{existing[-1]}, {element}")])
        else:
            headers.add(header, element)
    return headers


@settings(max_examples=300, deadline=None)
@given(client=_UNTRUSTED, written=_CLIENT_WRITES, proxies=_TRUSTED_HOPS,
       header=st.sampled_from(["x-forwarded-for", "forwarded", "x-real-ip"]),
       same_line=st.lists(st.booleans(), min_size=3, max_size=3))
def test_the_client_address_is_never_one_the_client_wrote(client, written, proxies, header, same_line) -> None:
    headers = _through_proxies(client, written, proxies, header, same_line)
    peer = str(proxies[-1]) if proxies else str(client)
    ident = identify(peer, headers, IdentityConfig(), PROXIES, forwarded_header=header)
    assert ident.ip == client_address(str(client))  # what the nearest trusted proxy saw, whatever was written
    # Without trusted proxies nothing written counts: the peer is the client.
    assert identify(peer, headers, IdentityConfig(), (), forwarded_header=header).ip == client_address(peer)


_SANCTIONS = ("suspend_user", "terminate_session")


@settings(max_examples=300, deadline=None)
@given(written=_CLIENT_WRITES, peer=st.sampled_from(["10.0.0.5", "198.51.100.1", "fd00::5"]),
       gateway=st.booleans())
def test_no_sanction_lands_on_an_id_the_client_merely_named(written, peer, gateway) -> None:
    cfg = IdentityConfig(trusted_user_header="x-authenticated-user" if gateway else None)
    headers = CIMultiDict(written)
    ident = identify(peer, headers, cfg, PROXIES)
    from_gateway = gateway and peer != "198.51.100.1" and (headers.get("x-authenticated-user") or "").strip() not in ("", "*")
    assert ident.scope == (ident.api_key_hash or ident.ip)
    for kind in _SANCTIONS:
        target = "user" if kind == "suspend_user" else "session"
        ladder = Escalation(frozenset({"prompt_injection"}), 1, 60.0, kind, 60.0)
        aimed = ladder_subject(ladder, ident)
        if target == "user" and from_gateway:  # vouched for by the gateway: the user alone
            assert ident.user_bound and aimed == ident.user
            continue
        assert not ident.user_bound or target == "session"
        assert aimed is not None and aimed.endswith(f"@{ident.scope}")  # scoped, or the scope itself
        assert strike_subject(ladder, ident, aimed) == f"*@{ident.scope}"  # offences count against the scope
        assert (target, f"*@{ident.scope}") in ident.sanction_keys()
        # Under a key they count against the address too, where a sanction is then looked up.
        address = address_strike_subject(ladder, ident)
        assert address == (f"*@{ident.ip}" if ident.scope != ident.ip else None)
        assert address is None or (target, address) in ident.sanction_keys()
    isolate = Escalation(frozenset({"prompt_injection"}), 1, 60.0, "isolate_agent", 60.0)
    aimed = ladder_subject(isolate, ident)  # a named agent scoped, else the key itself
    assert aimed is None or aimed.endswith(f"@{ident.scope}") or aimed == ident.api_key_hash
    assert aimed is None or strike_subject(isolate, ident, aimed) == f"*@{ident.scope}"
    for key in ("client", "user", "session", "agent", "key", "ip"):
        subj = override_subject(ident, key)
        bound = subj == f"user:{ident.user}" and ident.user_bound
        assert bound or subj in (f"ip:{ident.ip}", ident.api_key_hash), (key, subj)
        if key in ("client", "user", "session", "agent") and not bound:
            assert subj in (f"ip:{ident.scope}", ident.scope), (key, subj)  # the scope, never a named id


def test_a_key_nobody_checks_scopes_nothing() -> None:
    headers = {"Authorization": "Bearer sk-made-up", "X-User-ID": "bob"}
    unchecked = identify("198.51.100.1", headers, IdentityConfig(), keys_checked=False)
    assert unchecked.scope == "198.51.100.1" and unchecked.user == "bob@198.51.100.1"
    assert unchecked.api_key_hash == key_fingerprint("sk-made-up")  # still recorded, for limits and usage
    assert override_subject(unchecked, "client") == "ip:198.51.100.1"
    assert identify("198.51.100.1", headers, IdentityConfig()).scope == key_fingerprint("sk-made-up")


def test_a_gateway_header_from_an_untrusted_peer_is_an_ordinary_claim() -> None:
    cfg = IdentityConfig(trusted_user_header="x-authenticated-user")
    headers = {"X-Authenticated-User": "alice", "X-User-ID": "alice"}
    direct = identify("198.51.100.1", headers, cfg, PROXIES)
    assert not direct.user_bound and direct.user == "alice@198.51.100.1"
    via = identify("10.0.0.5", {**headers, "X-Forwarded-For": "203.0.113.5"}, cfg, PROXIES)
    assert via.user_bound and via.user == "alice" and via.session is None


def test_allowlisted_user_patterns_match_only_vouched_for_users(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text("name: p\nallowlist: {users: ['svc-*']}\n")
    p = load_policy("p", tmp_path)
    assert not is_allowlisted(identify("198.51.100.1", {"X-User-ID": "svc-backup"}, IdentityConfig()), p)
    gateway = IdentityConfig(trusted_user_header="x-authenticated-user")
    assert is_allowlisted(identify("10.0.0.5", {"X-Authenticated-User": "svc-backup"}, gateway, PROXIES), p)


def test_the_deployment_names_its_forwarding_header() -> None:
    assert from_env({}).forwarded_header == "x-forwarded-for"
    assert from_env({"LLM_FIREWALL_FORWARDED_HEADER": "X-Real-IP"}).forwarded_header == "x-real-ip"
    with pytest.raises(ConfigError, match="LLM_FIREWALL_FORWARDED_HEADER"):
        from_env({"LLM_FIREWALL_FORWARDED_HEADER": "True-Client-IP"})
    # A policy's own choice wins over the deployment's.
    headers = {"X-Real-IP": "192.0.2.7", "Forwarded": "for=192.0.2.8"}
    assert identify("10.0.0.5", headers, IdentityConfig(), PROXIES, forwarded_header="x-real-ip").ip == "192.0.2.7"
    assert identify("10.0.0.5", headers, IdentityConfig(forwarded_header="forwarded"), PROXIES,
                    forwarded_header="x-real-ip").ip == "192.0.2.8"


# ---------------------------------------------------------------------------------------------
# The one client address: normalised, and an IPv6 client counted by its network.

_V4 = st.ip_addresses(v=4)
_V6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)


def _spellings_v4(addr) -> list[str]:
    return [str(addr), f"::ffff:{addr}", f"::FFFF:{addr}",
            f"[::ffff:{addr}]:443", f"{addr}:8080", f'"{addr}"']


def _spellings_v6(addr) -> list[str]:
    return [str(addr), addr.exploded, addr.exploded.upper(), f"{addr}%eth0", f"[{addr}]:443", f"[{addr}%2]:80",
            f'"[{addr.exploded}]"']


@settings(max_examples=300, deadline=None)
@given(addr=_V4)
def test_every_spelling_of_an_ipv4_client_is_one_address(addr) -> None:
    assert {client_address(v) for v in _spellings_v4(addr)} == {str(addr)}


@settings(max_examples=300, deadline=None)
@given(addr=_V6, prefix=st.integers(min_value=32, max_value=128), host_bits=st.integers(min_value=0))
def test_an_ipv6_client_is_counted_by_its_network_however_spelt(addr, prefix, host_bits) -> None:
    import ipaddress

    found = {client_address(v, prefix) for v in _spellings_v6(addr)}
    assert len(found) == 1
    (net,) = found
    assert net is not None
    if prefix == 128:
        assert net == str(addr)
        return
    network = ipaddress.ip_network(net)
    assert network.prefixlen == prefix and addr in network
    # Changing the interface id (any host bits) keeps the subject; a different network does not.
    sibling = ipaddress.IPv6Address(int(network.network_address) | (host_bits % (1 << (128 - prefix))))
    if sibling.ipv4_mapped is None:
        assert client_address(str(sibling), prefix) == net
    neighbour = int(network.network_address) ^ (1 << (128 - prefix))
    assert client_address(str(ipaddress.IPv6Address(neighbour)), prefix) != net


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30))
def test_what_is_no_address_is_none_and_never_raises(text) -> None:
    import ipaddress

    found = client_address(text)
    assert found is None or ipaddress.ip_network(found)  # an address, or a network: nothing else


@settings(max_examples=200, deadline=None)
@given(addr=st.one_of(_V4, _V6))
def test_identify_and_the_walk_use_the_one_address(addr) -> None:
    spelt = f"{addr}%eth1" if addr.version == 6 else f"::ffff:{addr}"
    assert identify(spelt, {}, IdentityConfig()).ip == client_address(str(addr))
    assert client_ip("10.0.0.5", {"X-Forwarded-For": f"{spelt}, 10.0.0.9"}, PROXIES) == client_address(str(addr))
    if addr.version == 6:
        assert identify(str(addr), {}, IdentityConfig(), ipv6_prefix=128).ip == str(addr)


def test_an_allowlisted_ipv6_address_covers_its_counted_network(tmp_path) -> None:
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text("name: p\nextends: production\nallowlist: {ips: ['2001:db8:5::7']}\n")
    policy = load_policy(policy_file)
    assert is_allowlisted(identify("2001:db8:5::9", {}, IdentityConfig()), policy)
    assert not is_allowlisted(identify("2001:db8:6::7", {}, IdentityConfig()), policy)


@pytest.mark.parametrize("value", ["31", "129", "x"])
def test_a_bad_ipv6_prefix_is_a_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match="LLM_FIREWALL_IPV6_PREFIX"):
        from_env({"LLM_FIREWALL_IPV6_PREFIX": value})


@settings(max_examples=100, deadline=None)
@given(addr=_V4)
def test_a_dotted_quad_with_leading_zeros_is_no_address(addr) -> None:
    """`010.1.2.3` is 10.1.2.3 to one reader and 8.1.2.3 to inet_aton: no sanction may rest on it."""
    padded = ".".join(o.zfill(3) for o in str(addr).split("."))
    assert client_address(padded) is None or padded == str(addr)


def test_a_user_id_of_star_is_no_id_so_it_cannot_name_the_address_record() -> None:
    ident = identify("203.0.113.9", CIMultiDict({"X-User-ID": "*", "X-Session-ID": " * "}), IdentityConfig())
    assert ident.user is None and ident.session is None
    assert identify("203.0.113.9", CIMultiDict({"X-User-ID": "*bob"}), IdentityConfig()).user != "*@203.0.113.9"
