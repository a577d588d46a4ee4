"""Who sent a request: client IP (proxy-aware), hashed API key, user, session and agent.

Pure: takes the peer address and headers, never a request object, so it tests without a server.
Forwarding headers are believed only from trusted proxies; anybody can write X-Forwarded-For.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, TypeAlias

from llm_firewall.domain import FORWARDED_HEADERS, Identity
from llm_firewall.redact import key_fingerprint

if TYPE_CHECKING:
    from llm_firewall.policy.model import IdentityConfig, Policy

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ID_LEN = 128  # longer user/session/agent values are hashed: bounded memory, safe logs


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.0/8, 127.0.0.1' -> networks; raises ValueError naming the bad entry."""
    out = []
    for raw in cidrs:
        item = raw.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {item!r}") from None
    return tuple(out)


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(cidrs)


# IPv6 clients are counted and sanctioned by network: one host owns a whole /64, and changing
# the interface id must not escape a block (LLM_FIREWALL_IPV6_PREFIX; 128 counts each address).
DEFAULT_IPV6_PREFIX = 64
MIN_IPV6_PREFIX = 32  # shorter prefixes would lump providers' customers together



def _parse_addr(value: str) -> Address | None:
    """An address from a forwarding hop or a peer, normalised: '1.2.3.4', '1.2.3.4:80',
    '[::1]:80', '"[::1]"'; a zone id (``fe80::1%eth0``) dropped, an IPv4-mapped address
    (``::ffff:1.2.3.4``) its IPv4 address. A dotted quad with leading zeros is no address: one
    reader takes ``010`` as 10, another (inet_aton) as 8, so no sanction may rest on it."""
    v = value.strip().strip('"').strip()
    if v.startswith("["):
        v = v[1:].split("]", 1)[0]
    elif v.count(":") == 1:  # IPv4 with port
        v = v.split(":", 1)[0]
    v = v.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def counted_as(addr: Address, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The subject an address is counted and sanctioned by: an IPv4 address itself, an IPv6
    address its network of `ipv6_prefix` bits (``2001:db8:1:2::/64``)."""
    if addr.version == 4 or ipv6_prefix >= 128:
        return str(addr)
    return str(ipaddress.IPv6Network((int(addr) >> (128 - ipv6_prefix) << (128 - ipv6_prefix), ipv6_prefix)))


def client_address(value: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str | None:
    """THE client address of a hop or peer string (`_parse_addr`, then `counted_as`); None when
    it is no address. Every address the firewall counts or sanctions comes from here."""
    addr = _parse_addr(value)
    return None if addr is None else counted_as(addr, ipv6_prefix)


def as_network(value: str) -> Network | None:
    """A client address (``1.2.3.4``) or counted network (``2001:db8::/64``) as a network."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def is_range(key: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> bool:
    """True for an `ip` sanction key covering more than one client: a network, except an IPv6
    client's own (`counted_as`), which is looked up exactly like an address. Stores index only
    ranges for the covering check: a blocked IPv6 client must not slow every other request."""
    if "/" not in key:
        return False
    net = as_network(key)
    return net is not None and not (net.version == 6 and net.prefixlen == ipv6_prefix)


def within(value: str, net: Network) -> bool:
    """True when the client address or counted network `value` lies in `net` (a range block)."""
    own = as_network(value)
    return own is not None and own.version == net.version and own.subnet_of(net)  # type: ignore[arg-type]


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:  # multidict: every occurrence, in order
        return list(getall(name, []))
    lower = name.lower()
    return [v for k, v in headers.items() if k.lower() == lower]


DEFAULT_FORWARDED_HEADER = FORWARDED_HEADERS[0]  # X-Forwarded-For


def _hops(value: str, header: str) -> list[str]:
    """The hops of the believed header's (joined) value, left to right.

    `Forwarded` (RFC 7239): one element per hop, its `for=` parameter the address; an element
    without one is an unknown hop (it stops the walk). The others: comma-separated addresses."""
    if header != "forwarded":
        return [part for part in value.split(",") if part.strip()]
    hops: list[str] = []
    for element in value.split(","):
        if not element.strip():
            continue
        found = ""
        for pair in element.split(";"):
            key, _, val = pair.partition("=")
            if key.strip().lower() == "for":
                found = val
        hops.append(found)
    return hops


def _trusted(addr: Address, trusted: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


# A plain dotted quad without leading zeros: exactly what `str(ip_address(x))` returns for it.
_DOTTED_QUAD = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


MAX_REMEMBERED_PEERS = 1024  # distinct connection peers whose resolution `Trust` keeps


class Trust:
    """The trusted proxies of one configuration, ready for cheap per-request checks.

    Hashes by identity (a cache key that costs nothing), and answers for plain dotted quads
    with integer masks instead of building `ipaddress` objects: forwarding hops are almost
    always such quads, and this runs on every request."""

    __slots__ = ("networks", "header", "ipv6_prefix", "_v4", "_peers")

    def __init__(self, networks: Sequence[Network], header: str = DEFAULT_FORWARDED_HEADER,
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self.networks = tuple(networks)
        self.header = header  # the one forwarding header believed (lower case)
        self.ipv6_prefix = ipv6_prefix  # IPv6 clients are counted by this network (see `counted_as`)
        self._v4 = tuple((int(n.network_address), int(n.netmask)) for n in self.networks if n.version == 4)
        # Peers (the load balancers in front of us, or direct clients) recur: remembered, bounded.
        self._peers: dict[str, tuple[str, bool] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def resolve(self, value: str) -> tuple[str, bool] | None:
        """(client address, trusted?) for a hop or peer string; None when it is no address.

        The address is `client_address`'s (an IPv6 one its network); trust is decided on the
        address itself."""
        v = value.strip()
        if _DOTTED_QUAD.fullmatch(v):
            a, b, c, d = v.split(".")
            n = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
            return v, any(n & mask == net for net, mask in self._v4)
        addr = _parse_addr(value)
        if addr is None:
            return None
        return counted_as(addr, self.ipv6_prefix), _trusted(addr, self.networks)

    def resolve_peer(self, peer: str) -> tuple[str, bool] | None:
        """`resolve` for the connection's peer address, remembered for the next request."""
        try:
            return self._peers[peer]
        except KeyError:
            if len(self._peers) >= MAX_REMEMBERED_PEERS:
                self._peers.clear()
            found = self._peers[peer] = self.resolve(peer)
            return found


@lru_cache(maxsize=64)
def trust_of(networks: tuple[Network, ...], header: str = DEFAULT_FORWARDED_HEADER,
             ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> Trust:
    """One `Trust` per distinct set of networks, header and IPv6 prefix (from settings and
    policies: few)."""
    return Trust(networks, header, ipv6_prefix)


# Forwarding headers longer than this (together) are walked on every request instead of being
# cached: the cache then holds at most 8,192 short chains, not 8,192 chains of up to 16 KB.
CACHED_HOPS_CHARS = 512


def client_ip(peer: str, headers: Mapping[str, str], trusted_proxies: Sequence[Network] | Trust) -> str:
    """The client's address (see `_walk_hops`); cached, since the same hops recur constantly.

    Only the header the `Trust` names is read; several instances of it are one list, in order
    (RFC 9110 §5.3), as aiohttp keeps them."""
    trust = trusted_proxies if isinstance(trusted_proxies, Trust) else trust_of(tuple(trusted_proxies))
    getall = getattr(headers, "getall", None)
    values = getall(trust.header, ()) if getall is not None else _header_values(headers, trust.header)
    value = values[0] if len(values) == 1 else ",".join(values)
    if len(value) > CACHED_HOPS_CHARS:  # written by clients: long chains are not kept
        return _walk_hops(peer, value, trust)
    return _client_ip(peer, value, trust)


def _walk_hops(peer: str, value: str, trust: Trust) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy.

    Then the believed header's hops are walked right to left (nearest first), skipping trusted
    proxies; the first untrusted address is the client. A hop that is no address stops the walk
    at the last address a trusted proxy vouched for: never a value further left, which only the
    client wrote.
    """
    found = trust.resolve_peer(peer or "")
    if found is None:
        return peer or "unknown"
    current, trusted = found
    if not trusted:
        return current
    if "," not in value and trust.header != "forwarded":  # one hop or none: the usual case
        if value.strip():
            found = trust.resolve(value)
            if found is not None:
                return found[0]
        return current
    for hop in reversed(_hops(value, trust.header)):
        found = trust.resolve(hop)
        if found is None:
            break
        current, trusted = found
        if not trusted:
            break
    return current


_client_ip = lru_cache(maxsize=8192)(_walk_hops)


def _clean_id(value: str | None) -> str | None:
    """A user, session or agent id as the client wrote it, printable and bounded; `*` is no id
    (it would name the `*@scope` record that stands for every id from one key or address)."""
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return None
    if len(value) <= MAX_ID_LEN and value.isprintable():  # the common case, without a per-char loop
        return value or None
    value = "".join(ch for ch in value if ch.isprintable())
    if not value:
        return None
    if len(value) > MAX_ID_LEN:
        return "h:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return value


def _first(headers: Mapping[str, str], name: str) -> str | None:
    if hasattr(headers, "getall"):  # multidict: case-insensitive, first occurrence
        return headers.get(name)
    values = _header_values(headers, name)
    return values[0] if values else None


# Headers that carry a client's credential, in the order the firewall reads them to know the
# client (`credential_header`). Passed through, only that one is forwarded: a second credential
# beside it would let the upstream bill one key while sanctions fall on another.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "ocp-apim-subscription-key", "x-goog-api-key",
                      "anthropic-api-key")


def credential_header(headers: Mapping[str, str]) -> str | None:
    """The header whose credential names the client: a bearer Authorization, else the first
    other credential header present (lower case), else None."""
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "authorization"
    return next((name for name in CREDENTIAL_HEADERS[1:] if headers.get(name)), None)


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The client's credential: the one header `credential_header` names (the only one forwarded)."""
    name = credential_header(headers)
    if name is None:
        return None
    value = _first(headers, name) or ""
    return value.strip().partition(" ")[2].strip() if name == "authorization" else value.strip() or None


def identify(peer: str, headers: Mapping[str, str], policy_identity: IdentityConfig,
             trusted_proxies: Sequence[Network] = (), *, trust: Trust | None = None,
             forwarded_header: str = DEFAULT_FORWARDED_HEADER, keys_checked: bool = True,
             ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> Identity:
    """Identity of a request; the proxies trusted are `trusted_proxies` plus the policy's.

    `trust`, when given, is that union already prepared (see `trust_for`): the gateway keeps
    one per policy instead of rebuilding it on every request. User, session and agent ids the
    client names are scoped to its key, else its address (see `Identity`); only the policy's
    `trusted_user` header, arriving from a trusted proxy, names a user alone. A key scopes only
    when the upstream checks it (`keys_checked`): a key nobody checks is one more claim."""
    if trust is None:
        trust = trust_for(trusted_proxies, policy_identity, forwarded_header, ipv6_prefix)
    key = api_key_of(headers)
    key_hash = key_fingerprint(key) if key else None
    ip = client_ip(peer, headers, trust)
    scope = key_hash if key_hash and keys_checked else ip
    user = None
    if policy_identity.trusted_user_header is not None:
        via = trust.resolve_peer(peer or "")
        if via is not None and via[1]:  # written by the gateway, not by a client
            user = _clean_id(_first(headers, policy_identity.trusted_user_header))
    return Identity(
        ip=ip,
        api_key_hash=key_hash,
        user=user or _scoped(_clean_id(_first(headers, policy_identity.user_header)), scope),
        session=_scoped(_clean_id(_first(headers, policy_identity.session_header)), scope),
        agent=_scoped(_clean_id(_first(headers, policy_identity.agent_header)), scope),
        scope=scope,
        user_bound=user is not None,
    )


def vouched(ip: str, *, user: str | None = None, session: str | None = None, agent: str | None = None) -> Identity:
    """An identity a trusted gateway names for its own client (the guard API's callers, who
    hold a token): ids held as given, not scoped to a key or address, as a `trusted_user`
    header's user is. Raises ValueError when `ip` is no address."""
    addr = _parse_addr(ip) if ip.strip() == ip else None
    if addr is None:
        raise ValueError(f"not an IP address: {ip!r}")
    user = _clean_id(user)
    return Identity(ip=str(addr), user=user, session=_clean_id(session), agent=_clean_id(agent),
                    scope=None, user_bound=user is not None)


def _scoped(value: str | None, scope: str) -> str | None:
    return None if value is None else f"{value}@{scope}"


def trust_for(trusted_proxies: Sequence[Network], policy_identity: IdentityConfig,
              forwarded_header: str = DEFAULT_FORWARDED_HEADER, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> Trust:
    """The proxies trusted for a request (the deployment's plus the policy's), the one
    forwarding header believed from them (the policy's, else the deployment's) and the network
    IPv6 clients are counted by."""
    return trust_of(tuple(trusted_proxies) + _networks(tuple(policy_identity.trusted_proxies)),
                    policy_identity.forwarded_header or forwarded_header, ipv6_prefix)


def is_allowlisted(identity: Identity, policy: Policy) -> bool:
    """True when the client IP is in an allowlisted range or the user matches a pattern; only a
    user vouched for (a trusted gateway's, or the firewall's own) can match: anyone can name one."""
    allow = policy.allowlist
    if allow.ips:
        own = as_network(identity.ip)  # an IPv6 client's counted network overlaps its entry
        if own is not None and any(own.version == net.version and own.overlaps(net)
                                   for net in _networks(tuple(allow.ips))):
            return True
    if allow.users and identity.user and (identity.scope is None or identity.user_bound):  # never a named id
        return any(fnmatch.fnmatchcase(identity.user, pattern) for pattern in allow.users)
    return False


def anchor_of(kind: str, key: str) -> str | None:
    """The key-or-address record (``*@203.0.113.9``) kept beside a scoped user, session or agent
    sanction (``bob@203.0.113.9``); None for other kinds and for anchors themselves."""
    if kind not in ("user", "session", "agent") or key.startswith("*@") or "@" not in key:
        return None
    return "*@" + key.rsplit("@", 1)[1]


def describe(kind: str, key: str) -> str:
    """A sanction's subject for people: 'user bob@203.0.113.9', 'user bob (key …1a2b)',
    'every session from 203.0.113.9', 'rate limit on ip 203.0.113.9', 'flagged session s1@…'."""
    if kind == "rate_limit":  # its key is a limit's subject: 'ip:1.2.3.4', 'key:…', 'user:bob@…'
        of, _, value = key.partition(":")
        if of == "key":
            return f"rate limit on key …{key[-4:]}"
        return f"rate limit on {describe(of, value) if value else key}"
    if kind == "flag":
        return f"flagged {describe('session', key)}"
    name, at, scope = key.rpartition("@")
    if kind not in ("user", "session", "agent") or not at:
        return f"{kind} {key}"
    where = f"key …{scope[-4:]}" if scope.startswith("key:") else scope
    if name == "*":
        return f"every {kind} from {where}"
    return f"{kind} {name} ({where})" if scope.startswith("key:") else f"{kind} {key}"


def subject(kind: str, value: str) -> str:
    """A rate-limit/override subject: 'ip:1.2.3.4', 'user:alice'; key hashes are 'key:...' already."""
    return value if kind == "key" and value.startswith("key:") else f"{kind}:{value}"


_ATTR_OF = {"ip": "ip", "key": "api_key_hash", "user": "user", "session": "session", "agent": "agent"}


def subject_for(identity: Identity, key: str) -> str:
    """The subject for a rate-limit key; 'client' = user, else API key, else IP.

    A key the identity lacks (say `session` on a request without one) falls back to the client.
    Reads the fields directly (no `keys()` dict): this runs per rate limit on every request.
    """
    if key != "client":
        attr = _ATTR_OF.get(key)
        value = getattr(identity, attr) if attr else None
        if value:
            return subject(key, value)
    if identity.user:
        return subject("user", identity.user)
    if identity.api_key_hash:
        return subject("key", identity.api_key_hash)
    return subject("ip", identity.ip)


def override_subject(identity: Identity, key: str) -> str:
    """Where a rate limit imposed after an offence lands: `subject_for`, unless that is an id
    the client merely names (scoped): then its scope (key or address), so naming another id
    (or none) does not shed the limit."""
    subj = subject_for(identity, key)
    if identity.scope is not None and (subj.startswith(("session:", "agent:"))
                                       or (subj.startswith("user:") and not identity.user_bound)):
        return subject("key", identity.scope) if identity.scope == identity.api_key_hash else subject("ip", identity.ip)
    return subj


def subjects(identity: Identity) -> list[str]:
    """Every subject an override limit may have been set on for this identity."""
    return [subject(kind, value) for kind, value in identity.keys().items()]
