"""The shared store: enforcement state in Redis, so every replica enforces the same sanctions,
counts against the same rate limits and executes each action once.

Every read-modify-write is one Lua script (atomic on the server), every call is bounded by a short
timeout (default 100 ms; `?socket_timeout=0.05` in the URL changes it), and redis-py's own
retries are off so nothing waits longer than that.

When Redis is down or hung the store degrades instead of failing the request:
- rate limits count on the local `fallback` store (a per-replica limiter) while the policy's
  `fail_modes.rate_limit` is `open` (the default), or raise StoreUnavailable when it is `closed`;
- a sanction the fallback knows is still enforced; otherwise the lookup raises StoreUnavailable
  and the Enforcer applies `fail_modes.store` (closed: 503 enforcement_unavailable);
- writes (sanctions, approvals, limits, strikes, claims) go to the fallback, which journals them.
The first failure marks Redis down (logged once, counted in `store_errors`, shown in stats());
calls then skip Redis at once while a probe pings it every `retry_interval_s`. On recovery the
fallback's sanctions and approvals, and the limits, levels and releases recorded meanwhile, are
pushed to Redis idempotently (by key, the longer sanction wins) before they are dropped locally.

Keys (all under `prefix`): `s:{kind}:{key}` hash per sanction with PEXPIREAT, `s:idx` and
`s:ranges` sorted sets by expiry (bounded listing, CIDR lookups), `rl:{bucket}` GCRA arrival
time, `ov:{subject}` override limits, `st:{ladder}:{subject}` strike times, `lv:...` ladder
levels, `cl:{key}` idempotency claims (SET NX PX), `ap:data`/`ap:decision` hashes with `ap:idx`
and `ap:decided` indexes for approvals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from llm_firewall.domain import Identity
from llm_firewall.enforce.identity import DEFAULT_IPV6_PREFIX, as_network, is_range, subjects, within
from llm_firewall.enforce.resp import ScriptClient
from llm_firewall.enforce.state import Approval, QuickCheck, RateResult, Sanction, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 0.1
_RESOLVED_KEPT = 1000  # decided approvals kept for the admin page (as the memory store does)
_SEEN_TTL_MS = 7 * 86400 * 1000  # an approval id pushed once is never pushed again this long
_GRACE_MS = 5000  # server-side expiry trails the absolute expiry a little (clock skew)
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
T = TypeVar("T")


# KEYS: sanction, idx, ranges. ARGV: kind, key, reason, created_at, expires_at ('' = never),
# level, alert_id ('' = none), idx member, is_range ('1'/'0'), zset score, pexpireat ms ('' = none),
# rule ('' = none)
_ADD_SANCTION = """
local cur = redis.call('HMGET', KEYS[1], 'expires_at', 'level')
local now = tonumber(ARGV[4])
if cur[1] then
  local e = cur[1]
  local active = (e == '') or (tonumber(e) > now)
  if active and (e == '' or (ARGV[5] ~= '' and tonumber(e) >= tonumber(ARGV[5]))) then
    if tonumber(ARGV[6]) > tonumber(cur[2] or '0') then
      redis.call('HSET', KEYS[1], 'level', ARGV[6])
      return 2
    end
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'key', ARGV[2], 'reason', ARGV[3], 'created_at', ARGV[4],
           'expires_at', ARGV[5], 'level', ARGV[6], 'alert_id', ARGV[7], 'rule', ARGV[12])
if ARGV[11] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[11]) end
redis.call('ZADD', KEYS[2], ARGV[10], ARGV[8])
if ARGV[9] == '1' then redis.call('ZADD', KEYS[3], ARGV[10], ARGV[2]) end
return 1
"""

# GCRA over KEYS[first..last], with now, the asked cost, and each bucket's limit and window_s
# from ARGV[arg0 + 1] on. Same arithmetic as ratelimit.gcra, bucket after bucket; the first
# refusal stops (later buckets are not charged), as separate hits in that order would. Returns
# {allowed, retry_after, remaining of the last bucket charged, number of the refusing bucket
# (0: none)}.
_GCRA_FN = """
local function gcra(first, last, now, asked, arg0)
  local remaining = 0
  for i = first, last do
    local j = i - first + 1
    local limit, window = tonumber(ARGV[arg0 + 2 * j - 1]), tonumber(ARGV[arg0 + 2 * j])
    local cost = math.min(math.max(asked, 1), limit)
    if limit <= 0 then return {0, string.format('%.17g', window), 0, j} end
    local tat = tonumber(redis.call('GET', KEYS[i]) or '')
    local interval = window / limit
    local base = now
    if tat and tat > now then base = tat end
    local new_tat = base + interval * cost
    if new_tat - now > window + 1e-9 then
      return {0, string.format('%.17g', new_tat - now - window), 0, j}
    end
    remaining = math.floor((window - (new_tat - now)) / interval + 1e-9)
    if remaining < 0 then remaining = 0 end
    redis.call('SET', KEYS[i], string.format('%.17g', new_tat), 'PX', string.format('%d', math.ceil((new_tat - now) * 1000) + 1000))
  end
  return {1, '0', remaining, 0}
end
"""

# What the sanction check reads: KEYS[1..n] the sanction hashes of an identity's keys, KEYS[n+1]
# the ranges index, KEYS[n+2..last] the override hashes of its subjects. One script instead of a
# pipeline of ~10 commands (whose packing and parsing cost the client more CPU than the whole
# request otherwise); nil when none of it exists, the usual answer.
_LOOKUP_FN = """
local function lookup(n, last, now, max_list)
  local out, found = {}, false
  for i = 1, n do
    out[i] = redis.call('HGETALL', KEYS[i])
    if #out[i] > 0 then found = true end
  end
  out[n + 1] = redis.call('ZRANGEBYSCORE', KEYS[n + 1], '(' .. now, '+inf', 'LIMIT', 0, max_list)
  if #out[n + 1] > 0 then found = true end
  for i = n + 2, last do
    out[i] = redis.call('HMGET', KEYS[i], 'limit', 'window_s', 'until')
    if out[i][1] then found = true end
  end
  if found then return out end
  return nil
end
"""

# KEYS: buckets. ARGV: now, cost, then limit and window_s of each bucket.
_GCRA = _GCRA_FN + "return gcra(1, #KEYS, tonumber(ARGV[1]), tonumber(ARGV[2]) or 1, 2)\n"

# KEYS: as `lookup`. ARGV: n, now, max_list. 0 when nothing exists.
_LOOKUP = _LOOKUP_FN + "return lookup(tonumber(ARGV[1]), #KEYS, ARGV[2], tonumber(ARGV[3])) or 0\n"

# An ordinary request's whole check in one round trip. KEYS: as `lookup` (k override hashes), then
# the buckets. ARGV: n, now, max_list, k, cost, then limit and window_s of each bucket. The
# lookup's tables when anything exists (nothing is charged then), else the buckets' GCRA answer.
_CHECK = _LOOKUP_FN + _GCRA_FN + """
local n, k = tonumber(ARGV[1]), tonumber(ARGV[4])
return lookup(n, n + 1 + k, ARGV[2], tonumber(ARGV[3]))
       or gcra(n + 2 + k, #KEYS, tonumber(ARGV[2]), tonumber(ARGV[5]) or 1, 5)
"""

# KEYS: override, its bucket. ARGV: limit, window_s, until, now, pexpireat ms
_SET_OVERRIDE = """
local cur = redis.call('HMGET', KEYS[1], 'limit', 'window_s', 'until')
local untl = tonumber(ARGV[3])
if cur[1] and tonumber(cur[1]) == tonumber(ARGV[1]) and tonumber(cur[2]) == tonumber(ARGV[2])
   and tonumber(cur[3]) > tonumber(ARGV[4]) then
  if tonumber(cur[3]) > untl then untl = tonumber(cur[3]) end
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'limit', ARGV[1], 'window_s', ARGV[2], 'until', string.format('%.17g', untl))
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.ceil(untl * 1000) + 5000))
return 1
"""

# KEYS: strikes. ARGV: now, within_s, member
_ADD_STRIKE = """
local now, within = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - within))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(within * 1000) + 5000))
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: ap:data, ap:decision, ap:decided. ARGV: id, decision json, decided_at
_RESOLVE = """
local data = redis.call('HGET', KEYS[1], ARGV[1])
if not data then return false end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return false end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return data
"""

# KEYS: ap:data, ap:idx, seen marker. ARGV: id, json, created_at, seen ttl ms, only_if_unseen
_ADD_APPROVAL = """
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 1
"""


def _timeout_from_url(url: str) -> float | None:
    values = parse_qs(urlsplit(url).query).get("socket_timeout")
    return float(values[0]) if values else None


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _ms(t: float) -> str:
    return str(int(math.ceil(t * 1000)) + _GRACE_MS)


@dataclass
class _Health:
    up: bool = True
    down_since: float | None = None
    last_error: str | None = None
    errors: int = 0
    outages: int = 0
    fallback_reads: int = 0
    fallback_writes: int = 0
    reconciled: int = 0
    last_reconcile: dict[str, int] = field(default_factory=dict)


class RedisStore:
    """The `Store` protocol on Redis, degrading to a local store (see the module docstring)."""

    def __init__(self, url: str, *, fallback: Any, metrics: Any = None, timeout_s: float | None = None,
                 prefix: str = "llmfw:", retry_interval_s: float = 0.5, max_list: int = 10_000,
                 clock: Callable[[], float] = time.time,
                 fail_modes: Callable[[], Mapping[str, str]] | None = None,
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self._ipv6_prefix = ipv6_prefix  # an IPv6 client's own network is no range (see `is_range`)
        self.timeout_s = timeout_s or _timeout_from_url(url) or DEFAULT_TIMEOUT_S
        self._redis = aioredis.from_url(
            url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0), decode_responses=True)
        self._fallback = fallback
        self._metrics = metrics
        self._p = prefix
        self._retry_interval = retry_interval_s
        self._max_list = max_list
        self._clock = clock
        self.fail_modes = fail_modes or (lambda: {"store": "closed", "rate_limit": "open"})
        self._health = _Health()
        self.on_state_change: Callable[[dict[str, Any]], None] | None = None  # e.g. a live-feed event
        self._probe: asyncio.Task[None] | None = None
        self._unreconciled = False  # the fallback may hold writes Redis has not seen yet
        self._pending_ops: list[tuple[str, tuple[Any, ...]]] = []  # limits/levels/releases made while down
        # override limits read in the same round trip as the sanction lookup, for the same instant
        self._prefetched: tuple[float, dict[str, list[str | None]]] = (0.0, {})
        parts = urlsplit(url)  # never log the password
        self._url_safe = (f"unix://{parts.path}" if parts.scheme == "unix"
                          else f"{parts.scheme}://{parts.hostname or ''}:{parts.port or 6379}{parts.path}")
        r = self._redis
        self._add_sanction_script = r.register_script(_ADD_SANCTION)
        self._gcra = r.register_script(_GCRA)
        self._lookup_script = r.register_script(_LOOKUP)
        self._check_script = r.register_script(_CHECK)
        # The scripts every request runs go through a lean pipelined client (see resp.py).
        self._fast = ScriptClient.for_url(url)
        self._set_override_script = r.register_script(_SET_OVERRIDE)
        self._strike_script = r.register_script(_ADD_STRIKE)
        self._resolve_script = r.register_script(_RESOLVE)
        self._add_approval_script = r.register_script(_ADD_APPROVAL)

    # ------------------------------------------------------------------ plumbing

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    @property
    def available(self) -> bool:
        return self._health.up

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis interaction within the timeout; raise StoreUnavailable when it fails."""
        if not self._health.up:
            raise StoreUnavailable("redis is down")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await fn()
        except _FAILURES as exc:
            self._failed(op, exc)
            raise StoreUnavailable(f"redis {op} failed: {type(exc).__name__}") from exc

    def _failed(self, op: str, exc: BaseException) -> None:
        h = self._health
        h.errors += 1
        h.last_error = f"{op}: {type(exc).__name__}: {exc}"[:300]
        if self._metrics is not None:
            self._metrics.store_errors.labels(op).inc()
        if h.up:
            h.up, h.down_since, h.outages = False, self._clock(), h.outages + 1
            log.error("shared state unavailable (redis at %s: %s); degrading to the local store: "
                      "rate limits per fail_modes.rate_limit, sanction checks per fail_modes.store",
                      self._url_safe, h.last_error)
            self._notify({"redis": "down", "error": h.last_error, "fail_modes": dict(self.fail_modes())})
            self._ensure_probe()

    def _notify(self, info: dict[str, Any]) -> None:
        if self.on_state_change is not None:
            try:
                self.on_state_change(info)
            except Exception:  # noqa: BLE001 - a broken listener must not break the store
                log.exception("store state listener failed")

    def _ensure_probe(self) -> None:
        if self._probe is None or self._probe.done():
            try:
                self._probe = asyncio.get_running_loop().create_task(self._probe_loop(), name="redis-probe")
            except RuntimeError:
                pass

    async def _probe_loop(self) -> None:
        while not self._health.up:
            await asyncio.sleep(self._retry_interval)
            try:
                await asyncio.wait_for(self._redis.ping(), self.timeout_s)
            except _FAILURES:
                continue
            except asyncio.CancelledError:
                raise
            await self._recover()

    async def _recover(self) -> None:
        """Redis answers again: mark it up (new writes go there) and push what happened meanwhile."""
        h = self._health
        down_for = self._clock() - (h.down_since or self._clock())
        h.up, h.down_since = True, None
        try:
            counts = await self.reconcile()
        except StoreUnavailable:
            return  # failed again; the probe keeps going
        log.warning("shared state available again after %.1fs; reconciled %s", down_for, counts)
        self._notify({"redis": "up", "down_for_s": round(down_for, 3), "reconciled": counts})

    async def start(self, fail_modes: Callable[[], Mapping[str, str]] | None = None) -> None:
        """Connect, and push anything a previous run left in the fallback (crash during an outage)."""
        if fail_modes is not None:
            self.fail_modes = fail_modes
        self._unreconciled = True
        try:
            await self._call("ping", self._redis.ping)
            await self.reconcile()
        except StoreUnavailable:
            log.error("redis at %s is not reachable at start; running degraded", self._url_safe)

    async def _degraded_write(self) -> None:
        self._health.fallback_writes += 1
        self._unreconciled = True

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self) -> dict[str, int]:
        """Push the fallback's sanctions and approvals and the ops recorded while down; idempotent."""
        counts = {"sanctions": 0, "approvals": 0, "ops": 0}
        if not self._unreconciled and not self._pending_ops:
            return counts
        fb, now = self._fallback, self._clock()
        for s in await fb.list_sanctions(now):
            await self._call("reconcile", lambda s=s: self._write_sanction(s))
            await fb.remove_sanction(s.kind, s.key)
            counts["sanctions"] += 1
        for a in await fb.list_approvals():
            pushed = await self._call("reconcile", lambda a=a: self._write_approval(a, only_if_unseen=True))
            if a.status != "pending":
                decision = {"status": a.status, "decided_by": a.decided_by, "decided_at": a.decided_at}
                pushed = await self._call("reconcile", lambda a=a, d=decision: self._resolve_script(
                    keys=[self._k("ap", "data"), self._k("ap", "decision"), self._k("ap", "decided")],
                    args=[a.id, orjson.dumps(d).decode(), _num(a.decided_at or now)])) or pushed
            counts["approvals"] += int(bool(pushed))
        while self._pending_ops:
            name, args = self._pending_ops[0]
            await self._call("reconcile", lambda name=name, args=args: getattr(self, name)(*args))
            self._pending_ops.pop(0)
            counts["ops"] += 1
        self._unreconciled = False
        self._health.reconciled += sum(counts.values())
        self._health.last_reconcile = counts
        return counts

    # ------------------------------------------------------------------ sanctions

    async def active_sanction(self, identity: Identity, now: float) -> Sanction | None:
        if self._unreconciled or not self._health.up:
            local = await self._fallback.active_sanction(identity, now)
            if local is not None:
                return local
        if not self._health.up:
            self._health.fallback_reads += 1
        order, subs, keys = self._lookup_keys(identity)
        res = await self._call("active_sanction", lambda: self._script(
            _LOOKUP, self._lookup_script, keys, [str(len(order)), repr(now), str(self._max_list)]))
        return await self._sanction_in(res, order, subs, now)

    async def check_quick(self, identity: Identity, now: float, hits: Sequence[tuple[str, int, float]]
                          ) -> QuickCheck | None:
        """The sanction lookup and the rate-limit hits of an ordinary request in one script, one
        round trip instead of two: the buckets are charged only when no sanction, range or
        override limit exists (the usual answer). Otherwise nothing is charged and the answer
        carries the active sanction, if any, with the overrides prefetched for the Enforcer's
        next step, as `active_sanction` leaves them. None while Redis is degraded or the
        fallback holds writes Redis has not seen: then the step-by-step path decides."""
        if self._unreconciled or not self._health.up:
            return None
        order, subs, keys = self._lookup_keys(identity)
        args = [str(len(order)), repr(now), str(self._max_list), str(len(subs)), "1", *_limit_args(hits)]
        res = await self._call("check", lambda: self._script(
            _CHECK, self._check_script, keys + self._bucket_keys(hits), args))
        if isinstance(res[0], list):  # the lookup's tables: something exists
            return QuickCheck(await self._sanction_in(res, order, subs, now), None, False)
        return QuickCheck(None, _refusal(res, hits), True)

    def _lookup_keys(self, identity: Identity) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """An identity's (kind, key) sanction keys in checking order, its subjects, and the
        lookup script's KEYS for them."""
        order = identity.sanction_keys()
        subs = subjects(identity)
        return order, subs, [*(self._k("s", kind, value) for kind, value in order), self._k("s", "ranges"),
                             *(self._k("ov", subj) for subj in subs)]

    async def _sanction_in(self, res: Any, order: list[tuple[str, str]], subs: list[str],
                           now: float) -> Sanction | None:
        """The active sanction in a lookup's answer (0, or its tables), first in `order`;
        prefetches the overrides it read, for the Enforcer's next step at the same `now`."""
        n = len(order)
        if res == 0:
            found: list[dict[str, str]] = [{}] * n
            ranges: list[str] = []
            overrides: list[list[str | None]] = [[None, None, None]] * len(subs)
        else:
            found = [dict(zip(flat[::2], flat[1::2])) for flat in res[:n]]
            ranges = res[n]
            overrides = [[v if v else None for v in row] for row in res[n + 1:n + 1 + len(subs)]]
        self._prefetched = (now, dict(zip(subs, overrides)))
        for (kind, value), data in zip(order, found):
            if data:
                s = _sanction(data)
                if s.active(now):
                    return s
            if kind == "ip" and ranges:
                hit = _covering(value, ranges)
                if hit:
                    data = await self._call("active_sanction", lambda: self._redis.hgetall(self._k("s", "ip", hit)))
                    if data and _sanction(data).active(now):
                        return _sanction(data)
        return None

    def _write_sanction(self, s: Sanction) -> Awaitable[Any]:
        member = f"{s.kind}\x00{s.key}"
        score = "+inf" if s.expires_at is None else repr(s.expires_at)
        ranged = s.kind == "ip" and is_range(s.key, self._ipv6_prefix)
        return self._add_sanction_script(
            keys=[self._k("s", s.kind, s.key), self._k("s", "idx"), self._k("s", "ranges")],
            args=[s.kind, s.key, s.reason, repr(s.created_at), _num(s.expires_at), str(s.level), s.alert_id or "",
                  member, "1" if ranged else "0", score, "" if s.expires_at is None else _ms(s.expires_at),
                  s.rule or ""])

    async def add_sanction(self, s: Sanction) -> None:
        try:
            await self._call("add_sanction", lambda: self._write_sanction(s))
        except StoreUnavailable:
            await self._fallback.add_sanction(s)
            await self._degraded_write()

    async def _delete_sanction(self, kind: str, key: str) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._k("s", kind, key))
        pipe.zrem(self._k("s", "idx"), f"{kind}\x00{key}")
        pipe.zrem(self._k("s", "ranges"), key)
        res = await pipe.execute()
        return bool(res[0])

    async def remove_sanction(self, kind: str, key: str) -> bool:
        local = await self._fallback.remove_sanction(kind, key)
        try:
            return await self._call("remove_sanction", lambda: self._delete_sanction(kind, key)) or local
        except StoreUnavailable:
            self._pending_ops.append(("_delete_sanction", (kind, key)))
            await self._degraded_write()
            return True  # released here now, and in Redis on recovery

    async def list_sanctions(self, now: float) -> list[Sanction]:
        local = await self._fallback.list_sanctions(now) if (self._unreconciled or not self._health.up) else []

        async def fetch() -> list[dict[str, str]]:
            idx = self._k("s", "idx")
            await self._redis.zremrangebyscore(idx, "-inf", repr(now))
            await self._redis.zremrangebyscore(self._k("s", "ranges"), "-inf", repr(now))
            members = await self._redis.zrange(idx, 0, self._max_list - 1)
            pipe = self._redis.pipeline(transaction=False)
            for m in members:
                kind, _, key = m.partition("\x00")
                pipe.hgetall(self._k("s", kind, key))
            return await pipe.execute()

        try:
            rows = await self._call("list_sanctions", fetch)
        except StoreUnavailable:  # a listing (admin, /metrics) shows what this replica knows
            local, rows = await self._fallback.list_sanctions(now), []
        out = {(s.kind, s.key): s for s in (_sanction(d) for d in rows if d) if s.active(now)}
        for s in local:
            out.setdefault((s.kind, s.key), s)
        return sorted(out.values(), key=lambda s: s.created_at)

    # ------------------------------------------------------------------ rate limits

    async def hit(self, bucket: str, limit: int, window_s: float, now: float, cost: int = 1) -> RateResult:
        reply = await self._gcra_reply([(bucket, limit, window_s)], now, cost)
        if reply is None:
            return await self._fallback.hit(bucket, limit, window_s, now, cost)
        allowed, retry, remaining, _ = reply
        return RateResult(bool(int(allowed)), float(retry), int(remaining), limit)

    async def hit_all(self, hits: Sequence[tuple[str, int, float]], now: float, cost: int = 1) -> RateResult | None:
        reply = await self._gcra_reply(hits, now, cost)
        if reply is None:
            return await self._fallback.hit_all(hits, now, cost)
        return _refusal(reply, hits)

    async def _gcra_reply(self, hits: Sequence[tuple[str, int, float]], now: float, cost: int) -> Any | None:
        """The GCRA script's reply over `hits`; None when Redis is unavailable and the rate-limit
        fail mode is open (the caller then counts in the fallback); raises when it is closed."""
        try:
            return await self._call("hit", lambda: self._script(
                _GCRA, self._gcra, self._bucket_keys(hits), [repr(now), str(int(cost)), *_limit_args(hits)]))
        except StoreUnavailable:
            if self.fail_modes().get("rate_limit", "open") == "closed":
                raise
            self._health.fallback_reads += 1
            return None

    def _bucket_keys(self, hits: Sequence[tuple[str, int, float]]) -> list[str]:
        return [self._k("rl", bucket) for bucket, _, _ in hits]

    def _script(self, source: str, registered: Any, keys: list[str], args: list[str]) -> Awaitable[Any]:
        """Run a hot-path script: on the lean client when the URL allows it, else redis-py's."""
        if self._fast is not None:
            return self._fast.evalsha(source, keys, args)
        return registered(keys=keys, args=args)

    def _write_override(self, subject: str, limit: int, window_s: float, until: float) -> Awaitable[Any]:
        return self._set_override_script(
            keys=[self._k("ov", subject), self._k("rl", f"override:{subject}")],
            args=[str(limit), repr(float(window_s)), repr(until), repr(self._clock())])

    async def set_override_limit(self, subject: str, limit: int, window_s: float, until: float) -> None:
        try:
            await self._call("set_override_limit", lambda: self._write_override(subject, limit, window_s, until))
        except StoreUnavailable:
            await self._fallback.set_override_limit(subject, limit, window_s, until)
            self._pending_ops.append(("_write_override", (subject, limit, window_s, until)))
            await self._degraded_write()

    def _delete_override(self, subject: str) -> Awaitable[Any]:
        return self._redis.delete(self._k("ov", subject), self._k("rl", f"override:{subject}"))

    async def remove_override_limit(self, subject: str) -> bool:
        local = await self._fallback.remove_override_limit(subject)
        try:
            return bool(await self._call("remove_override_limit", lambda: self._delete_override(subject))) or local
        except StoreUnavailable:
            self._pending_ops.append(("_delete_override", (subject,)))
            await self._degraded_write()
            return True  # lifted here now, and in Redis on recovery

    async def override_limit(self, subject: str, now: float) -> tuple[int, float] | None:
        at, cached = self._prefetched
        v = cached.pop(subject, None) if at == now else None
        if v is not None:
            return None if v[0] is None or float(v[2]) <= now else (int(v[0]), float(v[1]))
        try:
            v = await self._call("override_limit",
                                 lambda: self._redis.hmget(self._k("ov", subject), "limit", "window_s", "until"))
        except StoreUnavailable:
            if self.fail_modes().get("rate_limit", "open") == "closed":
                raise
            return await self._fallback.override_limit(subject, now)
        if v[0] is None or float(v[2]) <= now:
            return None
        return int(v[0]), float(v[1])

    # ------------------------------------------------------------------ escalation

    async def add_strike(self, ladder: str, subject: str, now: float, within_s: float) -> int:
        try:
            return int(await self._call("add_strike", lambda: self._strike_script(
                keys=[self._k("st", ladder, subject)], args=[repr(now), repr(float(within_s)), f"{now!r}:{uuid.uuid4().hex[:8]}"])))
        except StoreUnavailable:
            await self._degraded_write()
            return await self._fallback.add_strike(ladder, subject, now, within_s)

    async def clear_strikes(self, ladder: str, subject: str) -> None:
        await self._fallback.clear_strikes(ladder, subject)
        try:
            await self._call("clear_strikes", lambda: self._redis.delete(self._k("st", ladder, subject)))
        except StoreUnavailable:
            self._pending_ops.append(("_clear_strikes", (ladder, subject)))

    def _clear_strikes(self, ladder: str, subject: str) -> Awaitable[Any]:
        return self._redis.delete(self._k("st", ladder, subject))

    async def get_level(self, ladder: str, subject: str, now: float) -> int:
        try:
            v = await self._call("get_level", lambda: self._redis.hmget(self._k("lv", ladder, subject), "level", "until"))
        except StoreUnavailable:
            return await self._fallback.get_level(ladder, subject, now)
        remote = int(v[0]) if v[0] is not None and float(v[1]) > now else 0
        if self._unreconciled:
            remote = max(remote, await self._fallback.get_level(ladder, subject, now))
        return remote

    async def _write_level(self, ladder: str, subject: str, level: int, until: float) -> None:
        key = self._k("lv", ladder, subject)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"level": str(level), "until": repr(until)})
        pipe.pexpireat(key, int(_ms(until)))
        await pipe.execute()

    async def set_level(self, ladder: str, subject: str, level: int, until: float) -> None:
        try:
            await self._call("set_level", lambda: self._write_level(ladder, subject, level, until))
        except StoreUnavailable:
            await self._fallback.set_level(ladder, subject, level, until)
            self._pending_ops.append(("_write_level", (ladder, subject, level, until)))
            await self._degraded_write()

    async def claim(self, idempotency_key: str, ttl_s: float, now: float) -> bool:
        try:
            return bool(await self._call("claim", lambda: self._redis.set(
                self._k("cl", idempotency_key), "1", nx=True, px=max(1, int(ttl_s * 1000)))))
        except StoreUnavailable:
            # Exactly-once holds per replica only while Redis is away (said in stats and docs).
            return await self._fallback.claim(idempotency_key, ttl_s, now)

    # ------------------------------------------------------------------ approvals

    def _write_approval(self, a: Approval, only_if_unseen: bool = False) -> Awaitable[Any]:
        pending = {**a.to_dict(), "status": "pending", "decided_by": None, "decided_at": None}
        return self._add_approval_script(
            keys=[self._k("ap", "data"), self._k("ap", "idx"), self._k("ap", "seen", a.id)],
            args=[a.id, orjson.dumps(pending).decode(), repr(a.created_at), str(_SEEN_TTL_MS),
                  "1" if only_if_unseen else "0"])

    async def add_approval(self, a: Approval) -> None:
        try:
            await self._call("add_approval", lambda: self._write_approval(a))
        except StoreUnavailable:
            await self._fallback.add_approval(a)
            await self._degraded_write()
            return
        if a.status != "pending":
            await self._call("add_approval", lambda: self._resolve_script(
                keys=[self._k("ap", "data"), self._k("ap", "decision"), self._k("ap", "decided")],
                args=[a.id, orjson.dumps({"status": a.status, "decided_by": a.decided_by,
                                          "decided_at": a.decided_at}).decode(), _num(a.decided_at or a.created_at)]))

    async def _fetch_approvals(self, ids: list[str] | None) -> list[Approval]:
        data_key, dec_key = self._k("ap", "data"), self._k("ap", "decision")
        if ids is None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(data_key)
            pipe.hgetall(dec_key)
            data, decisions = await pipe.execute()
        else:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(data_key, ids)
            pipe.hmget(dec_key, ids)
            d, dd = await pipe.execute()
            data = {i: v for i, v in zip(ids, d) if v is not None}
            decisions = {i: v for i, v in zip(ids, dd) if v is not None}
        out = []
        for aid, raw in data.items():
            item = orjson.loads(raw)
            if aid in decisions:
                item.update(orjson.loads(decisions[aid]))
            out.append(Approval.from_dict(item))
        return out

    async def list_approvals(self, status: str | None = None) -> list[Approval]:
        try:
            items = await self._call("list_approvals", lambda: self._fetch_approvals(None))
        except StoreUnavailable:
            items = []
        if not self._health.up or self._unreconciled:
            known = {a.id for a in items}
            items += [a for a in await self._fallback.list_approvals() if a.id not in known]
        items = [a for a in items if status is None or a.status == status]
        return sorted(items, key=lambda a: a.created_at)

    async def get_approval(self, approval_id: str) -> Approval | None:
        try:
            found = await self._call("get_approval", lambda: self._fetch_approvals([approval_id]))
        except StoreUnavailable:
            local = await self._fallback.get_approval(approval_id)
            if local is None:
                raise
            return local
        if found:
            return found[0]
        return await self._fallback.get_approval(approval_id) if self._unreconciled else None

    async def _prune_decided(self) -> None:
        decided = self._k("ap", "decided")
        extra = await self._redis.zcard(decided) - _RESOLVED_KEPT
        if extra > 0:
            old = [m for m, _ in await self._redis.zpopmin(decided, extra)]
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._k("ap", "data"), *old)
            pipe.hdel(self._k("ap", "decision"), *old)
            pipe.zrem(self._k("ap", "idx"), *old)
            await pipe.execute()

    async def resolve_approval(self, approval_id: str, approve: bool, by: str, now: float) -> Approval | None:
        decision = {"status": "approved" if approve else "denied", "decided_by": by, "decided_at": now}
        try:
            raw = await self._call("resolve_approval", lambda: self._resolve_script(
                keys=[self._k("ap", "data"), self._k("ap", "decision"), self._k("ap", "decided")],
                args=[approval_id, orjson.dumps(decision).decode(), repr(now)]))
        except StoreUnavailable:
            if await self._fallback.get_approval(approval_id) is None:
                raise
            await self._degraded_write()
            return await self._fallback.resolve_approval(approval_id, approve, by, now)
        if not raw:
            if self._unreconciled:
                return await self._fallback.resolve_approval(approval_id, approve, by, now)
            return None
        try:
            await self._call("resolve_approval", self._prune_decided)
        except StoreUnavailable:
            pass
        return Approval.from_dict({**orjson.loads(raw), **decision})

    # ------------------------------------------------------------------ status

    async def stats(self) -> dict:
        h = self._health
        out: dict[str, Any] = {
            "backend": "redis",
            "redis": "up" if h.up else "down",
            "url": self._url_safe,
            "timeout_ms": round(self.timeout_s * 1000, 1),
            "down_since": h.down_since,
            "errors": h.errors,
            "last_error": h.last_error,
            "outages": h.outages,
            "fallback_reads": h.fallback_reads,
            "fallback_writes": h.fallback_writes,
            "unreconciled": self._unreconciled or bool(self._pending_ops),
            "reconciled": h.reconciled,
            "last_reconcile": h.last_reconcile,
            "fail_modes": dict(self.fail_modes()),
        }
        now = self._clock()

        async def counts() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcount(self._k("s", "idx"), f"({now!r}", "+inf")
            pipe.hlen(self._k("ap", "data"))
            pipe.zcard(self._k("ap", "decided"))
            return await pipe.execute()

        try:
            active, approvals, decided = await self._call("stats", counts)
            out.update(sanctions=active, pending_approvals=max(approvals - decided, 0),
                       sanction_listing_capped=active > self._max_list)
        except StoreUnavailable:
            out.update(sanctions=None, pending_approvals=None)
        out["fallback"] = await self._fallback.stats()
        return out

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._fast is not None:
            self._fast.close()
        try:
            await asyncio.wait_for(self._redis.aclose(), 1.0)
        except (*_FAILURES, Exception):  # noqa: BLE001 - closing a dead connection is not an error
            pass
        await self._fallback.close()


def _limit_args(hits: Sequence[tuple[str, int, float]]) -> list[str]:
    """The GCRA's ARGV for some buckets: limit and window_s of each, in order."""
    return [arg for _, limit, window_s in hits for arg in (str(limit), repr(float(window_s)))]


def _refusal(reply: Sequence[Any], hits: Sequence[tuple[str, int, float]]) -> RateResult | None:
    """The refusing bucket's result in a GCRA reply over `hits` (None: all admitted)."""
    allowed, retry, _, which = reply
    return None if int(allowed) else RateResult(False, float(retry), 0, hits[int(which) - 1][1])


def _sanction(data: Mapping[str, str]) -> Sanction:
    return Sanction(
        data["kind"], data["key"], data.get("reason", ""), float(data["created_at"]),
        None if not data.get("expires_at") else float(data["expires_at"]),
        int(data.get("level") or 0), data.get("alert_id") or None, data.get("rule") or None,
    )


def _covering(ip: str, ranges: list[str]) -> str | None:
    """The range (of `ranges`) a client address or counted network lies in, if any."""
    for cidr in ranges:
        net = as_network(cidr)
        if net is not None and within(ip, net):
            return cidr
    return None


__all__ = ["RedisStore", "StoreUnavailable", "DEFAULT_TIMEOUT_S"]
