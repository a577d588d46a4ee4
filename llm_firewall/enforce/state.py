"""Enforcement state: sanctions, rate limits, strikes, idempotency claims and approvals.

`Store` is the one interface the inline path and the SOC pipeline use; the in-memory store
(memory_store.py) persists to the data directory and a Redis store implements the same protocol
for many replicas. Everything is async, every expiry is an absolute Unix time (so it survives a
restart or crosses machines) and every read-modify-write is a single call (so Redis can make it
one atomic script).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

from llm_firewall.domain import Identity
from llm_firewall.policy.model import Action

SANCTION_KINDS: tuple[str, ...] = ("ip", "session", "user", "agent", "key")  # checked in this order
# Kept and listed with the sanctions, never refusing by themselves: a rate limit imposed after an
# offence (its key the limit's subject, 'key:…' or 'ip:…'; the limit itself is the store's
# override) and a session flagged for the SOC.
LISTED_KINDS: tuple[str, ...] = ("rate_limit", "flag")


@dataclass(frozen=True)
class Sanction:
    """A subject refused until `expires_at` (None: until released). An `ip` key may be a CIDR.

    Of a `LISTED_KINDS` kind it only marks the subject (see there). `rule` names the rules
    whose findings led to it ('PI-001, PI-004'), for the admin listing."""

    kind: str
    key: str
    reason: str
    created_at: float
    expires_at: float | None
    level: int = 0
    alert_id: str | None = None
    rule: str | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Sanction":
        return cls(
            str(data["kind"]), str(data["key"]), str(data.get("reason", "")), float(data["created_at"]),
            None if data.get("expires_at") is None else float(data["expires_at"]),
            int(data.get("level", 0)), data.get("alert_id"), data.get("rule") or None,
        )


class RateResult(NamedTuple):
    """One rate-limit hit's outcome (a tuple: two are made per request, a frozen dataclass cost
    three times as much to build)."""

    allowed: bool
    retry_after: float
    remaining: int
    limit: int


class QuickCheck(NamedTuple):
    """What a shared store's one-round-trip request check (`check_quick`) found: an active
    sanction, or the limits charged (`limited`: the refusing bucket's result, None when all
    admitted), or neither when something else exists (override limits, ranges): then the
    Enforcer goes on step by step. A store answering inline has no such method (`check_now`)."""

    sanction: Sanction | None
    limited: RateResult | None
    charged: bool


@dataclass
class Approval:
    """An action waiting for an admin; `identity` says whom it concerns."""

    id: str
    action: Action
    identity: Identity
    alert_id: str | None
    created_at: float
    status: str = "pending"  # pending | approved | denied
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action.to_dict(),
            "identity": asdict(self.identity),
            "alert_id": self.alert_id,
            "created_at": self.created_at,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Approval":
        return cls(
            id=str(data["id"]), action=Action.from_dict(data["action"]), identity=Identity(**data["identity"]),
            alert_id=data.get("alert_id"), created_at=float(data["created_at"]),
            status=str(data.get("status", "pending")), decided_by=data.get("decided_by"),
            decided_at=data.get("decided_at"), reason=str(data.get("reason", "")),
        )


@runtime_checkable
class Store(Protocol):
    async def active_sanction(self, identity: Identity, now: float) -> Sanction | None:
        """The first sanction in force for ip (exact, then ranges), session, user, agent, key."""

    async def add_sanction(self, s: Sanction) -> None:
        """Durably record a sanction; an existing one for the same subject is kept if it lasts longer."""

    async def remove_sanction(self, kind: str, key: str) -> bool: ...

    async def list_sanctions(self, now: float) -> list[Sanction]: ...

    async def hit(self, bucket: str, limit: int, window_s: float, now: float, cost: int = 1) -> RateResult:
        """Atomically count one request (`cost` units) against `bucket` (GCRA, see ratelimit.py)."""

    async def hit_all(self, hits: Sequence[tuple[str, int, float]], now: float, cost: int = 1) -> RateResult | None:
        """`hit` on each (bucket, limit, window_s) in turn, stopping at the first refusal, which is
        returned (None: every bucket admitted the request). One round trip for a request's limits."""

    async def set_override_limit(self, subject: str, limit: int, window_s: float, until: float) -> None:
        """Limit `subject` to `limit` per `window_s` until `until`; re-imposing the same limit only extends it."""

    async def override_limit(self, subject: str, now: float) -> tuple[int, float] | None: ...

    async def remove_override_limit(self, subject: str) -> bool:
        """Lift an override limit (its listed `rate_limit` record is removed separately)."""

    async def add_strike(self, ladder: str, subject: str, now: float, within_s: float) -> int:
        """Record a strike and return how many fell within the last `within_s` seconds."""

    async def clear_strikes(self, ladder: str, subject: str) -> None: ...

    async def get_level(self, ladder: str, subject: str, now: float) -> int:
        """How many times a ladder already fired for the subject (0 once forgotten)."""

    async def set_level(self, ladder: str, subject: str, level: int, until: float) -> None: ...

    async def claim(self, idempotency_key: str, ttl_s: float, now: float) -> bool:
        """True exactly once per key within `ttl_s` (SET NX EX)."""

    async def add_approval(self, a: Approval) -> None: ...

    async def list_approvals(self, status: str | None = None) -> list[Approval]: ...

    async def get_approval(self, approval_id: str) -> Approval | None: ...

    async def resolve_approval(self, approval_id: str, approve: bool, by: str, now: float) -> Approval | None:
        """Pending -> approved/denied, once; returns None if unknown or already decided."""

    async def stats(self) -> dict: ...

    async def close(self) -> None: ...


class StoreUnavailable(RuntimeError):
    """The shared state could not be read in time; the policy's fail mode decides what happens."""

