"""The inline path: identify, refuse the sanctioned, inspect, decide, enforce, forward, inspect back.

This is the only place where the stages meet; each stage lives in its own module and is
testable alone. Observers never sit on this path: every alert is handed to the live feed
(AlertHub), the SOC pipeline (`submit_event`, which never blocks) and the audit trail, in that
order, through `_publish`. Large texts are inspected on one worker thread (`inspect_pool`), so
that a costly body does not hold the event loop, and every other request, for its duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import operator
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
import re2
from aiohttp import web
from cachetools import TTLCache

from llm_firewall import decision_log
from llm_firewall.alerts import AlertHub, build_alert
from llm_firewall.config import Settings
from llm_firewall.deadline import Deadline
from llm_firewall.detect.canary import canary_matcher
from llm_firewall.domain import Finding, Identity, TextItem
from llm_firewall.enforce.actions import Enforcer, Refusal
from llm_firewall.enforce.identity import identify, trust_for
from llm_firewall.inspector import Inspector
from llm_firewall.live_policy import LivePolicy
from llm_firewall.metrics import CIRCUIT_VALUES, Metrics
from llm_firewall.middlewares import CLIENT_REQUEST_ID
from llm_firewall.policy.decide import Decision, decide
from llm_firewall.policy.model import Policy
from llm_firewall.policy.trust import untrusted
from llm_firewall.proxy import hardening, strict_json
from llm_firewall.proxy.answer_shape import HEAD_BYTES, is_sse, read_answer, too_many_parts
from llm_firewall.proxy.content_coding import CodingError, TooLarge, decode_whole
from llm_firewall.proxy.forward import Upstream, UpstreamError, downstream_headers, upstream_headers
from llm_firewall.proxy.http1 import Http1Response
from llm_firewall.proxy.openai_wire import (
    IDENTIFIERS,
    JOINED,
    OPAQUE_TEXT,
    TEXTS,
    ParsedRequest,
    WireError,
    error_body,
    joined_orders,
    parse_json_body,
    request_texts,
    response_texts,
    rewrite_request_text,
    validate_shape,
)
from llm_firewall.proxy.openai_wire import set_path as _set_path
from llm_firewall.proxy.sse import EventSplitter, with_payload
from llm_firewall.proxy.stream_guard import StreamGuard
from llm_firewall.proxy.target import Passthrough, Target, TargetRefused, resolve
from llm_firewall.reliability.circuit import CircuitBreaker
from llm_firewall.score.fp import Bands, ScoreContext
from llm_firewall.soc.wiring import soc_event
from llm_firewall.usage import UsageTracker

log = logging.getLogger("llm_firewall.gateway")

_JSON_TYPES = ("application/json",)
BLOCKED_MESSAGE = "This request was refused by the content policy."
WITHHELD_MESSAGE = "The upstream answer was withheld by the content policy."


def json_error(status: int, message: str, *, code: str, request_id: str, param: str | None = None,
               err_type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> web.Response:
    """An OpenAI-shaped error response; the SDKs map it to their typed exceptions."""
    hdrs = {"x-request-id": request_id}
    if headers:
        hdrs.update(headers)
    return web.Response(status=status, body=error_body(message, code=code, err_type=err_type, param=param),
                        content_type="application/json", headers=hdrs)


T = TypeVar("T")
Restore = Callable[[Any], bool]  # puts the caller's own text back where an answer echoes a hardened one
_TEXT = operator.attrgetter("text")


class Gateway:
    def __init__(self, settings: Settings, *, inspector: Inspector, policy: LivePolicy, enforcer: Enforcer,
                 alerts: AlertHub, metrics: Metrics, usage: UsageTracker, upstream: Upstream,
                 submit_event: Callable[[dict[str, Any]], bool] | None = None, replica: str | None = None) -> None:
        self.settings = settings
        self.inspector = inspector
        self.policy = policy
        self.enforcer = enforcer
        self.alerts = alerts
        self.metrics = metrics
        self.usage = usage
        self.upstream = upstream
        self.submit_event = submit_event or (lambda event: True)
        self.replica = replica
        self.soc_enabled = True
        self.canary = f"cnry-{secrets.token_hex(8)}"
        self.breaker = CircuitBreaker("upstream", failure_threshold=settings.circuit_failures,
                                      reset_timeout_s=settings.circuit_reset_s)
        self.breaker.on_change = lambda name, old, new: self.metrics.circuit_state.labels(name).set(
            CIRCUIT_VALUES.get(new, 0))
        self.counts = {"requests": 0, "blocked": 0, "refused": 0}
        # Recent alerts per client, one input of the false-positive scorer (bounded, 10 minutes).
        self._recent_alerts: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=600)
        # Client API keys the upstream has accepted (their hashes), for a day: offences others
        # commit from the same address, under keys they make up, do not suspend these clients.
        self.proven_keys: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=86_400)
        self.inflight: set[asyncio.Task[Any]] = set()
        # Texts over `limits.thread_inspect_chars` are inspected here: a 4 MB body can take a second
        # of CPU, and on the event loop it would hold every other request for as long. On this
        # thread the loop gets the interpreter back every few milliseconds (the switch interval,
        # or the end of the longest native call: ~50 ms for a regex pass over 4 MB). One thread:
        # large inspections queue behind each other instead of taking more of the CPU. Two lanes,
        # each one thread with its own queue: texts over LARGE_TEXT_CHARS wait only behind each
        # other, so a client posting megabytes cannot keep a long conversation (tens of KB) out.
        self.inspect_lanes = (_Lane(ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")),
                              _Lane(ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect-large")))
        self._anchor: tuple[Any | None, int] = (None, 0)
        self._anchor_key: tuple[Any, Policy] | None = None  # held by reference: ids can be reused
        self._trust_key: Any = None
        self._trust = trust_for(settings.trusted_proxies, policy.current.identity, settings.forwarded_header,
                                settings.ipv6_prefix)
        self._passthrough_key: Policy | None = None
        self._passthrough_table = Passthrough()

    # -- identity and refusal ---------------------------------------------------------------------
    @property
    def trust(self) -> Any:
        """The proxies trusted under the policy in force, prepared once per policy."""
        config = self.policy.current.identity
        if self._trust_key is not config:  # prepared once per policy, not per request
            self._trust = trust_for(self.settings.trusted_proxies, config, self.settings.forwarded_header,
                                    self.settings.ipv6_prefix)
            self._trust_key = config
        return self._trust

    def identify(self, request: web.Request) -> Identity:
        ident = identify(request.remote or "", request.headers, self.policy.current.identity, trust=self.trust,
                         keys_checked=self.settings.client_keys_checked)
        if ident.api_key_hash is not None and ident.api_key_hash in self.proven_keys:
            return dataclasses.replace(ident, key_proven=True)
        return ident

    # -- the /v1 handler --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        rid: str = request["request_id"]
        started = time.perf_counter()
        self.counts["requests"] += 1
        route = "other"
        try:
            target = resolve(request.method, request.raw_path, base=self.upstream.base_path,
                             passthrough=self._passthrough(self.policy.current))
            route = target.endpoint.name if target.endpoint.known else "other"
            response = await self._handle(request, rid, target)
        except TargetRefused as exc:
            response = json_error(exc.status, exc.message, code=exc.code, request_id=rid)
        except WireError as exc:
            response = json_error(exc.status, exc.message, code=exc.code, param=exc.param,
                                  err_type=exc.err_type, request_id=rid)
        outcome = getattr(response, "_firewall_outcome", None) or (
            "ok" if response.status < 400 else f"{response.status}")
        m = self.metrics
        m.child(m.requests, route, outcome).inc()
        m.child(m.request_seconds, route).observe(time.perf_counter() - started)
        return response

    def _passthrough(self, policy: Policy) -> Passthrough:
        """The policy's passthrough endpoints, compiled once per policy."""
        if self._passthrough_key is not policy:
            self._passthrough_table = Passthrough.of(policy.passthrough_endpoints)
            self._passthrough_key = policy
        return self._passthrough_table

    async def _handle(self, request: web.Request, rid: str, target: Target) -> web.StreamResponse:
        endpoint = target.endpoint
        inspected = endpoint.body != "none"
        identity = self.identify(request)
        policy = self.policy.current
        enforcer = self.enforcer
        refusal = enforcer.check_now(identity, policy) if enforcer.inline else await enforcer.check(identity, policy)
        if refusal is not None:
            return self._refused(refusal, identity, rid, endpoint.name)
        if policy.token_budgets and inspected:
            over = self._budget_refusal(identity, policy)
            if over is not None:
                resp = json_error(429, over.message, code=over.code, err_type="rate_limit_error", request_id=rid,
                                  headers={"retry-after": str(int(over.retry_after or 1)),
                                           "x-should-retry": "false"})  # not before the budget resets
                resp._firewall_outcome = "token_budget_exceeded"  # type: ignore[attr-defined]
                return resp

        body: bytes | None = None
        parsed: ParsedRequest | None = None
        if inspected:
            body = await self.read_body(request)
            if policy.size_limits:
                refusal = await enforcer.charge(identity, policy, len(body))
                if refusal is not None:
                    return self._refused(refusal, identity, rid, endpoint.name)
            ctype = request.content_type
            if ctype not in _JSON_TYPES:
                raise WireError(f"Content-Type must be application/json, got {ctype or 'none'}",
                                status=415, code="unsupported_media_type")
            parsed = validate_shape(endpoint.name, parse_json_body(body, max_depth=self.settings.limits.max_json_depth),
                                    max_messages=self.settings.limits.max_messages)
        elif request.body_exists:  # fail closed: a body nobody inspects is never forwarded
            raise WireError(f"/v1/{target.path} takes no request body", code="unexpected_body")

        security_mode = policy.security_mode
        if parsed is not None and self.soc_enabled:
            security_mode = hardening.requested_mode(policy, request.headers.get("X-Security-Mode"))
            decision, findings, _alert = await self._inspect_request(parsed, identity, policy, rid, security_mode)
            if decision is not None and decision.blocked:
                self.counts["blocked"] += 1
                resp = json_error(400, BLOCKED_MESSAGE,
                                  code="content_policy_violation", request_id=rid)
                resp._firewall_outcome = "blocked"  # type: ignore[attr-defined]
                return resp
            if decision is not None and any(a.kind == "redact" for a in decision.actions):
                redact = functools.partial(self._redact_request, parsed, findings)
                texts = request_texts(parsed)
                parsed = redact() if self._inline(texts) else await self._on_inspection_thread(redact, _chars(texts))
                body = orjson.dumps(parsed.body)
        restore: Restore | None = None
        if parsed is not None and endpoint.name in hardening.ENDPOINTS:
            # The Responses API echoes `instructions` in its answer: hardened only when the answer
            # is inspected, which puts the caller's own back (`restore`).
            if endpoint.name != "responses" or self.soc_enabled:
                hardened = hardening.harden(parsed.body, security_mode, self.canary if policy.canary else None,
                                            endpoint.name)
                if hardened is not None:
                    body = orjson.dumps(hardened)
                    if endpoint.name == "responses":
                        restore = functools.partial(hardening.restore_instructions, sent=hardened["instructions"],
                                                    own=parsed.body.get("instructions"))
        return await self._forward(request, rid, target, body, parsed, identity, policy, restore)

    def _refused(self, refusal: Refusal, identity: Identity, rid: str, endpoint: str = "") -> web.Response:
        """The OpenAI-style answer to a sanctioned or over-limit client (reported to the SOC)."""
        self.counts["refused"] += 1
        keys = identity.keys()
        self.submit_event({"type": "request", "status": refusal.status, "outcome": refusal.code, "identity": keys})
        decision_log.emit(decision_log.refusal(refusal.code, refusal.status, keys, rid, endpoint))
        headers = {"x-should-retry": "false"} if refusal.status == 403 else {}
        if refusal.retry_after:
            headers["retry-after"] = str(max(1, int(refusal.retry_after + 0.999)))
        resp = json_error(refusal.status, refusal.message, code=refusal.code, request_id=rid,
                          err_type="rate_limit_error" if refusal.status == 429 else "permission_error",
                          headers=headers)
        resp._firewall_outcome = refusal.code  # type: ignore[attr-defined]
        return resp

    def _budget_refusal(self, identity: Identity, policy: Policy) -> Refusal | None:
        """A 429 until the day's end when the user or key has used its daily token budget."""
        over = self._over_budget(identity, policy)
        if over is None:
            return None
        return Refusal(429, "token_budget_exceeded", f"Daily token budget of this {over} is used up.",
                       float(int(86400 - time.time() % 86400) + 1))

    def _over_budget(self, identity: Identity, policy: Policy) -> str | None:
        """'user' or 'key' when that subject has used its daily token budget, else None."""
        for kind, subject in (("user", identity.user), ("key", identity.api_key_hash)):
            budget = policy.token_budgets.get(kind)
            if budget and subject and self.usage.tokens_today(kind, subject) >= budget:
                return kind
        return None

    async def read_body(self, request: web.Request) -> bytes:
        """The body as sent, decoded here with a bound: the server does not decode it itself, so a
        small gzip body cannot inflate to gigabytes before any limit applies (also the guard API's)."""
        limit = self.settings.limits.max_body_bytes
        try:
            raw = await request.read()
            return decode_whole(raw, request.headers.get("Content-Encoding", ""), limit)
        except (web.HTTPRequestEntityTooLarge, TooLarge):
            raise WireError(f"request body larger than {limit} bytes", status=413, code="request_too_large") from None
        except CodingError as exc:
            raise WireError(str(exc), status=415, code="unsupported_content_encoding") from None

    # -- request inspection -----------------------------------------------------------------------
    async def _inspect_request(self, parsed: ParsedRequest, identity: Identity, policy: Policy, rid: str,
                               security_mode: str, *, record: bool = True
                               ) -> tuple[Decision | None, list[Finding], dict[str, Any] | None]:
        """Inspect and decide; with `record` (all but the guard API's dry runs) also raise the
        alert and apply the decision's actions (sanctions, strikes, audit)."""
        items = request_texts(parsed)
        if policy.trusted_system_prompts:
            items = untrusted(items, policy.trusted_system_prompts)
        if not items:
            return None, [], None
        started = time.perf_counter()
        client = identity.user or identity.ip
        recent = self._recent_alerts
        # An empty TTLCache answers `len` at once, `get` only after its expiry bookkeeping.
        ctx = ScoreContext(recent_alerts=recent.get(client, 0) if len(recent) else 0)
        bands = self._bands(policy, security_mode)
        if self._inline(items):  # the usual case, without a coroutine or a partial more
            findings = self.inspector.inspect(items, "request", ctx=ctx, bands=bands)
        else:
            findings = await self._on_inspection_thread(functools.partial(
                self.inspector.inspect, items, "request", ctx=ctx, bands=bands), _chars(items), may_refuse=True)
        self.metrics.child(self.metrics.inspect_seconds, "request").observe(time.perf_counter() - started)
        if not findings:
            return None, [], None
        decision = decide(policy, findings, identity)
        if not record:
            return decision, findings, None
        self._recent_alerts[client] = self._recent_alerts.get(client, 0) + 1
        alert = self._new_alert(findings, identity, "request", rid, parsed.endpoint)
        actions = await self.enforcer.apply(decision, identity, alert, policy)
        alert["remediation_taken"] = list(actions)
        stored = self._publish(alert)
        if decision.blocked:  # a refusal is answered only once its alert is in the audit trail
            try:
                await asyncio.shield(stored)
            except Exception:
                log.exception("could not store the alert of refused request %s", rid)
        for action in actions:
            kind = str(action.get("action") or action.get("kind") or "?")
            self.metrics.actions.labels(kind, str(action.get("status", "?"))).inc()
        return decision, findings, alert

    def _inline(self, items: list[TextItem]) -> bool:
        """Whether these texts are inspected on the event loop (else on an inspection thread)."""
        return _chars(items) <= self.settings.limits.thread_inspect_chars

    async def _on_inspection_thread(self, inspect: Callable[[], T], size: int, *,
                                    may_refuse: bool = False) -> T:
        """`inspect()` on the inspection thread of the lane for `size` characters (or bytes). A request (`may_refuse`)
        finding its lane's queue full is refused with a 503; an answer the upstream has already
        produced waits."""
        lane = self.inspect_lanes[size > LARGE_TEXT_CHARS]
        if may_refuse and lane.queued >= self.settings.limits.max_queued_inspections:
            raise WireError("The firewall is inspecting as many large requests as it queues; retry shortly.",
                            status=503, code="firewall_busy", err_type="server_error")
        lane.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(lane.pool, inspect)
        finally:
            lane.queued -= 1

    def _bands(self, policy: Policy, security_mode: str) -> Bands:
        block, monitor = policy.fp_thresholds.block_below, policy.fp_thresholds.monitor_above
        if security_mode == "strict":  # strict tightens: more alerts land in the block band
            block, monitor = min(0.5, block + 0.2), min(0.9, monitor + 0.1)
        return Bands(block_below=block, monitor_above=monitor)

    def _new_alert(self, findings: list[Finding], identity: Identity, direction: str, rid: str,
                   endpoint: str) -> dict[str, Any]:
        """Build and count an alert; it is published once the actions taken are known."""
        alert = build_alert(findings, identity, direction=direction, request_id=rid, endpoint=endpoint,
                            replica=self.replica)
        alert["client_request_id"] = CLIENT_REQUEST_ID.get()
        for f in findings:
            self.metrics.child(self.metrics.rule_matches, f.rule_id).inc()
        self.metrics.child(self.metrics.alerts, alert["threat_type"], alert["severity"]).inc()
        if (alert.get("fp_probability") or 0.0) >= 0.7:
            self.metrics.false_positives.inc()
        return alert

    def _publish(self, alert: dict[str, Any]) -> asyncio.Future[Any]:
        """To the live feed, the SOC pipeline and (off the request path) the audit trail; returns
        the audit write, for callers that must not answer before it is stored."""
        self.alerts.add(alert)
        self.submit_event(soc_event(alert))
        return self._background(self.enforcer.audit.append("alert", alert))

    def _raise_alert(self, findings: list[Finding], identity: Identity, direction: str, rid: str,
                     endpoint: str) -> dict[str, Any]:
        alert = self._new_alert(findings, identity, direction, rid, endpoint)
        self._publish(alert)
        return alert

    def _background(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task

    def _redact_request(self, parsed: ParsedRequest, findings: list[Finding]) -> ParsedRequest:
        """Mask personal data and secrets in place before the body is forwarded."""
        threats = {f.threat for f in findings}
        body = orjson.loads(orjson.dumps(parsed.body))
        def mask(text: str) -> str:
            return self.inspector.engine.redact(text, threats=threats)[0]

        for item in request_texts(ParsedRequest(parsed.endpoint, body, parsed.stream, parsed.model)):
            rewrite_request_text(body, item, mask)
        return ParsedRequest(parsed.endpoint, body, parsed.stream, parsed.model)

    # -- forwarding -------------------------------------------------------------------------------
    async def _forward(self, request: web.Request, rid: str, target: Target, body: bytes | None,
                       parsed: ParsedRequest | None, identity: Identity, policy: Policy,
                       restore: Restore | None = None) -> web.StreamResponse:
        if not self.breaker.allow():
            wait = self.breaker.retry_after()
            return json_error(503, "The upstream is failing; the firewall is not sending it requests for now.",
                              code="upstream_circuit_open", err_type="server_error", request_id=rid,
                              headers={"retry-after": str(max(1, int(wait + 0.999)))})
        headers = upstream_headers(request.headers, authorization=self.upstream.authorization, request_id=rid)
        started = time.perf_counter()
        try:
            up = await self.upstream.send(request.method, target.upstream, headers, body)
        except UpstreamError as exc:
            if exc.status >= 500:  # a request refused before writing says nothing about the upstream
                self.breaker.record_failure()
            return json_error(exc.status, exc.message, code=exc.code, request_id=rid,
                              err_type="server_error" if exc.status >= 500 else "invalid_request_error")
        self.metrics.ttfb_seconds.observe(time.perf_counter() - started)
        if up.status >= 500:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        if (up.status < 300 and parsed is not None and identity.api_key_hash is not None
                and self.settings.client_keys_checked):
            # the upstream took the client's own key for a model call (a listing like /v1/models
            # may be answered whatever the key)
            self.proven_keys[identity.api_key_hash] = True
        if 300 <= up.status < 400 and up.status != 304:  # the client must not be sent elsewhere
            up.close()
            return json_error(502, "The upstream answered with a redirect; the firewall does not follow or relay it.",
                              code="upstream_redirect", err_type="server_error", request_id=rid)
        try:
            try:
                head = await _answer_head(up)
            except (TimeoutError, aiohttp.ClientError):
                return json_error(502, "The upstream answer was cut off.", code="upstream_error",
                                  err_type="server_error", request_id=rid)
            endpoint = parsed.endpoint if parsed is not None else target.endpoint.name
            if is_sse(head):  # the body's shape decides, not its Content-Type
                return await self._relay_stream(request, rid, up, head, parsed, endpoint, identity, policy, restore)
            return await self._relay_body(rid, up, head, parsed, endpoint, identity, policy, restore)
        finally:
            up.release()

    async def _relay_body(self, rid: str, up: Http1Response, head: bytes, parsed: ParsedRequest | None,
                          endpoint: str, identity: Identity, policy: Policy,
                          restore: Restore | None = None) -> web.Response:
        """A whole answer, inspected as what it is (JSON, text), or refused when undecodable."""
        try:
            data = head + await up.read()  # the upstream pool times out idle gaps
        except (TimeoutError, aiohttp.ClientError):
            return json_error(502, "The upstream answer was cut off.", code="upstream_error",
                              err_type="server_error", request_id=rid)
        headers = downstream_headers(up.headers)
        headers["x-request-id"] = rid
        if not self.soc_enabled:
            headers["Content-Type"] = up.content_type
            return web.Response(status=up.status, body=data, headers=headers)
        if len(data) > self.settings.limits.thread_inspect_chars:  # parsing 64 MB takes ~1 s: off the loop
            content_type = up.content_type
            answer = await self._on_inspection_thread(lambda: read_answer(data, content_type), len(data))
        else:
            answer = read_answer(data, up.content_type)
        if answer.kind == "json":
            headers["Content-Type"] = "application/json"
            value = answer.value
            limit = self.settings.limits.max_answer_parts
            excess = too_many_parts(value, limit)
            if excess is not None:
                return json_error(502, f"The upstream answer has more than {limit} {excess}; the firewall does "
                                  "not relay it.", code="upstream_too_many_parts", err_type="server_error",
                                  request_id=rid)
            if parsed is not None and up.status < 400 and isinstance(value, dict):
                self.usage.record(identity, parsed.model or value.get("model"), value.get("usage"),
                                  estimated_from=None)
            restored = restore is not None and restore(value)
            changed = await self._inspect_answer(value, endpoint, identity, policy, rid)
            if changed is WITHHELD:
                return _withheld(rid)
            if changed is not None or restored:
                data = orjson.dumps(value if changed is None else changed)
        elif answer.kind == "text":
            headers["Content-Type"] = f"{_text_type(up.content_type)}; charset=utf-8"
            masked = await self._inspect_text_answer(answer.value, endpoint, identity, policy, rid)
            if masked is WITHHELD:
                return _withheld(rid)
            if isinstance(masked, str):
                data = masked.encode("utf-8")
        elif answer.kind in ("undecodable", "ambiguous"):  # an answer that cannot be read is not relayed
            if answer.kind == "ambiguous" or parsed is not None or up.status >= 400:
                return json_error(502, f"The upstream answer {answer.reason}; the firewall does not relay "
                                  "what it cannot inspect.", code="upstream_undecodable",
                                  err_type="server_error", request_id=rid)
            headers["Content-Type"] = up.content_type  # bytes of another endpoint (audio, files): as sent
        return web.Response(status=up.status, body=data, headers=headers)

    def _response_findings(self, text: str, policy: Policy, *, remember: bool = True) -> list[Finding]:
        findings = self.inspector.engine.scan_text(text, role="response", direction="response",
                                                   remember=remember)
        return self._with_canary(findings, text, policy)

    def _label_findings(self, text: str, policy: Policy, threats: tuple[str, ...] | None = None) -> list[Finding]:
        """Secrets and personal data in an answer's labels (ids, model names, keys), as written: a
        new id every answer made the full scan, decoding views included, cost ~20 us; this ~2 us."""
        _, findings = self.inspector.engine.redact(text, threats=threats, direction="response")
        return self._with_canary(findings, text, policy)

    def _opaque_findings(self, text: str, policy: Policy) -> list[Finding]:
        """Secrets written as they are in an opaque payload (base64 image, vector, padding), and
        the canary: personal-data rules are left out, random base64 matches them by chance."""
        return self._label_findings(text, policy, _OPAQUE_THREATS)

    def _with_canary(self, findings: list[Finding], text: str, policy: Policy) -> list[Finding]:
        if policy.canary and canary_matcher(self.canary).found(text):  # also spelled out, encoded, reversed
            findings.append(Finding(rule_id="CANARY-001", title="System prompt canary echoed",
                                    threat="system_prompt_leakage", severity="critical", role="response",
                                    excerpt="[canary]"))
        return findings

    def _actionable(self, findings: list[Finding], identity: Identity, policy: Policy) -> bool:
        """Whether the policy acts on these answer findings (refuse or mask), not just logs them."""
        if not findings or policy.mode != "enforce":
            return False
        decision = decide(policy, findings, identity)
        return decision.blocked or decision.redact

    async def _inspect_answer(self, answer: Any, endpoint: str, identity: Identity, policy: Policy,
                              rid: str) -> Any:
        """Inspect a whole JSON answer; returns the changed answer, WITHHELD when it must not be
        relayed at all, or None when it passes."""
        outcome, _ = await self.judge_answer(answer, endpoint, identity, policy, rid)
        return outcome

    async def judge_answer(self, answer: Any, endpoint: str, identity: Identity, policy: Policy, rid: str,
                           *, record: bool = True) -> tuple[Any, list[Finding]]:
        """`_inspect_answer` with every finding in the answer; `record` False (the guard API's dry
        runs) raises no alert. Changes `answer` in place when it masks or empties texts."""
        items = response_texts(endpoint, answer)
        hits = await self._answer_findings_of(items, policy)
        if not hits:
            return None, []
        findings = [f for fs in hits.values() for f in fs]
        if record:
            self._raise_alert(findings, identity, "response", rid, endpoint)
        acted = {path for path, found in hits.items() if self._actionable(found, identity, policy)}
        if not acted:
            return None, findings
        if acted & _UNMASKABLE:  # labels and keys, opaque payloads, or the whole answer is one string
            return WITHHELD, findings
        self._act_on_texts(answer, items, acted, policy)
        if TEXTS in acted and not self._empty_pieces(answer, endpoint, identity, policy):
            return WITHHELD, findings
        return answer, findings

    def _empty_pieces(self, answer: Any, endpoint: str, identity: Identity, policy: Policy) -> bool:
        """Empty the texts holding the pieces of a key cut across fields (it cannot be masked in
        place), as found in the texts joined as a reader joins them. False when the joined texts
        still hold what the policy acts on (found only decoded, say): the answer is withheld."""
        for order in joined_orders(answer, response_texts(endpoint, answer)):
            text = "".join(item.text for item in order)
            if not self._actionable(self._response_findings(text, policy, remember=False), identity, policy):
                continue
            spans, _ = self.inspector.engine.mask_spans(text, direction="response")
            if policy.canary:
                spans += canary_matcher(self.canary).spans(text)
            pieces, pos = set(), 0
            for item in order:
                end = pos + len(item.text)
                if any(start < end and pos < stop for start, stop in spans):
                    pieces.add(item.path)
                pos = end
            if not pieces:
                return False
            self._act_on_texts(answer, order, pieces, policy, mask=False)
        return not any(self._actionable(self._response_findings(item.text, policy, remember=False), identity, policy)
                       for item in response_texts(endpoint, answer) if item.path == TEXTS)

    def _act_on_texts(self, answer: Any, items: list[TextItem], acted: set[str], policy: Policy, *,
                      mask: bool = True) -> None:
        """Mask (redact mode) or empty each answer text at a path in `acted`."""
        done: set[str] = set()
        for item in items:
            if item.path not in acted or item.path in done or item.path.startswith("#"):
                continue
            if item.path.endswith(JOINED):  # text joined from pieces (logprob tokens): removed
                _set_path(answer, item.path[:-len(JOINED)], None)
                done.add(item.path)
            elif mask and policy.response_action == "redact":
                _set_path(answer, item.path, self._mask(item.text))
            else:
                try:
                    _set_path(answer, item.path, "")
                except (TypeError, KeyError, IndexError):  # under a field removed just before
                    continue
                _mark_content_filter(answer, item.path)

    async def _inspect_text_answer(self, text: str, endpoint: str, identity: Identity, policy: Policy,
                                   rid: str) -> str | object | None:
        """Inspect a plain-text answer with the answer rules: masked text, WITHHELD, or None."""
        found = await self._answer_findings_of([TextItem(text, "response", "")], policy)
        if not found:
            return None
        self._raise_alert(found[""], identity, "response", rid, endpoint)
        if not self._actionable(found[""], identity, policy):
            return None
        if policy.response_action == "redact":
            masked = self._mask(text)
            if not self._response_findings(masked, policy, remember=False):
                return masked
        return WITHHELD

    async def _answer_findings_of(self, items: list[TextItem], policy: Policy) -> dict[str, list[Finding]]:
        if self._inline(items):
            return self._answer_findings(items, policy)
        return await self._on_inspection_thread(functools.partial(self._answer_findings, items, policy), _chars(items))

    def _mask(self, text: str) -> str:
        """An answer text with its secrets and personal data (and the canary) masked."""
        masked, _ = self.inspector.engine.redact(text, direction="response")
        if self.policy.current.canary:
            masked = canary_matcher(self.canary).mask(masked)  # every form: spelled out, encoded, reversed
        return masked

    def _answer_findings(self, items: list[TextItem], policy: Policy) -> dict[str, list[Finding]]:
        """Findings per answer text path (texts with none are left out)."""
        hits: dict[str, list[Finding]] = {}
        for item in items:
            found = (self._label_findings(item.text, policy) if item.path == IDENTIFIERS
                     else self._opaque_findings(item.text, policy) if item.path == OPAQUE_TEXT
                     else self._response_findings(item.text, policy))
            if found:
                for f in found:
                    f.path = item.path
                hits.setdefault(item.path, []).extend(found)
        return hits

    async def _relay_stream(self, request: web.Request, rid: str, up: Http1Response, head: bytes,
                            parsed: ParsedRequest | None, endpoint: str, identity: Identity,
                            policy: Policy, restore: Restore | None = None) -> web.StreamResponse:
        """An SSE-framed answer (whatever its label), each event's texts through the hold-back guard."""
        headers = downstream_headers(up.headers)
        headers["x-request-id"] = rid
        headers["Content-Type"] = "text/event-stream"
        resp = web.StreamResponse(status=up.status, headers=headers)
        await resp.prepare(request)
        inspect = self.soc_enabled
        splitter = EventSplitter()
        observed: dict[tuple[str, str], Finding] = {}

        def acted(found: list[Finding]) -> list[Finding]:
            for f in found:  # the held window is rescanned: remember each finding once
                observed.setdefault((f.rule_id, f.excerpt), f)
            return found if self._actionable(found, identity, policy) else []

        def scan(text: str) -> list[Finding]:
            return acted(self._response_findings(text, policy, remember=False))  # windows never recur

        anchor, width = self._stream_anchor(policy)
        window = self.settings.stream_window_chars
        if policy.canary:  # the longest encoded form of the canary must fit in the held window
            window = max(window, canary_matcher(self.canary).width)
        guard = StreamGuard(
            scan=scan, redact=lambda text: (self._mask(text), []),
            window=window, mode=policy.response_action, anchor=anchor, anchor_width=width,
            scan_opaque=lambda text: acted(self._opaque_findings(text, policy)),
            max_parts=self.settings.limits.max_answer_parts)
        usage_seen: dict[str, Any] | None = None
        model = parsed.model if parsed else None
        deadline = Deadline(self.settings.client_timeouts.stream)  # a stream that never ends is cut
        try:
            while True:
                try:  # the head already read first; the upstream pool times out idle gaps
                    chunk, head = (head, b"") if head else (await up.content.readany(), b"")
                except TimeoutError:
                    await self._end_stream_with_error(resp, "The upstream stopped sending.", "upstream_timeout")
                    return resp
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    out = guard.finish() if inspect and not guard.blocked else b""
                    if out:
                        await resp.write(out)
                    await self._end_stream_with_error(resp, "The upstream connection was cut mid-stream.",
                                                      "upstream_error")
                    return resp
                if not chunk:
                    break
                if not inspect:
                    await resp.write(chunk)
                    continue
                for event in splitter.feed(chunk):
                    payload = event.json()
                    if restore is not None and restore(payload):
                        event = with_payload(event, payload)
                    if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                        usage_seen = payload["usage"]
                    out = guard.feed(event)
                    if out:
                        await resp.write(out)
                if guard.blocked:
                    break
            if inspect and not guard.blocked:
                for event in splitter.flush():
                    payload = event.json()
                    if restore is not None and restore(payload):
                        event = with_payload(event, payload)
                    out = guard.feed(event)
                    if out:
                        await resp.write(out)
                out = guard.finish()
                if out:
                    await resp.write(out)
            await resp.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            log.info("client went away during a stream (request %s); closing upstream", rid)
            up.close()
        except ValueError as exc:  # an event too large or undecodable: stop, never pass it unread
            log.warning("stream stopped (request %s): %s", rid, exc)
            up.close()
            await self._end_stream_with_error(resp, f"The upstream sent an event the firewall cannot inspect ({exc}).",
                                              "upstream_error")
        except asyncio.CancelledError:
            if not deadline.reached():
                raise
            up.close()
            await self._end_stream_with_error(resp, "The stream reached the firewall's time limit.", "stream_timeout")
        finally:
            deadline.cancel()
            if observed:
                self._raise_alert(list(observed.values()), identity, "response", rid, endpoint)
            if inspect and parsed is not None:
                self.usage.record(identity, model, usage_seen,
                                  estimated_from=None if usage_seen else guard.assembled_chars)
        return resp

    def _stream_anchor(self, policy: Policy) -> tuple[Any | None, int]:
        """Where a match the policy would act on may start in an answer, and the anchor width.

        Only rules whose findings this policy refuses or masks need text held back for them;
        the start of every form of the canary (spelled out, encoded, reversed) is added when the
        policy plants one."""
        engine = self.inspector.engine
        if self._anchor_key is None or self._anchor_key[0] is not engine or self._anchor_key[1] is not policy:
            probe = Identity(ip="192.0.2.1")
            acted = [r.id for r in engine.rules_for("response") if self._actionable(
                [Finding(rule_id=r.id, title=r.title, threat=r.threat, severity=r.severity, category=r.category,
                         status=r.status, role="response")], probe, policy)]
            base = engine.stream_anchor("response", only=acted)
            width = engine.stream_anchor_width("response", only=acted)
            if base is not None and policy.canary:
                canary = canary_matcher(self.canary)
                base = re2.compile(f"{canary.anchor}|{base.pattern}")
                width = max(width, canary.anchor_width)
            self._anchor, self._anchor_key = (base, width), (engine, policy)
        return self._anchor

    async def _end_stream_with_error(self, resp: web.StreamResponse, message: str, code: str) -> None:
        try:
            await resp.write(b"data: " + orjson.dumps({"error": {"message": message, "type": "server_error",
                                                                 "param": None, "code": code}}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass

    # -- used by the page, the scenario runner and the guard API ----------------------------------
    async def analyse_chat(self, messages: list[dict[str, Any]], identity: Identity, *,
                           security_mode: str | None = None, rid: str = "internal") -> dict[str, Any]:
        """Run the request side of the inline path for one synthetic identity (no HTTP)."""
        parsed = validate_shape("chat/completions", {"messages": messages},
                                max_messages=self.settings.limits.max_messages)
        return await self.screen_request(parsed, identity, security_mode=security_mode, rid=rid)

    async def screen_request(self, parsed: ParsedRequest, identity: Identity, *, security_mode: str | None = None,
                             rid: str = "internal", record: bool = True, body_bytes: int = 0) -> dict[str, Any]:
        """The request side of the inline path without forwarding: refusal check, inspection,
        decision and (with `record`) its enforcement: limits and budgets counted (`body_bytes`
        against the size limits), alert raised, actions applied. `record` False (a dry run)
        counts no limit, raises no alert and applies nothing, but still answers for an active
        sanction.

        Returns the verdict: refused/blocked, status and code as the proxy would answer, the
        alert, the `decision`, the `findings` and, when the policy masks, the `redacted` request."""
        policy = self.policy.current
        if record:
            self.counts["requests"] += 1  # the page's scenario and guard traffic counts like any other
        refusal = await (self.enforcer.check(identity, policy) if record else self.enforcer.sanctioned(identity))
        if refusal is None and record and policy.token_budgets:  # in the proxy's order
            refusal = self._budget_refusal(identity, policy)
        if refusal is None and record and policy.size_limits and body_bytes:
            refusal = await self.enforcer.charge(identity, policy, body_bytes)
        if refusal is not None:
            self.counts["refused"] += record
            return {"refused": True, "status": refusal.status, "code": refusal.code, "message": refusal.message,
                    "retry_after": refusal.retry_after, "alert": None, "blocked": True, "decision": None,
                    "findings": []}
        if not self.soc_enabled:
            return {"refused": False, "blocked": False, "alert": None, "decision": None, "findings": []}
        decision, findings, alert = await self._inspect_request(
            parsed, identity, policy, rid, security_mode or policy.security_mode, record=record)
        blocked = bool(decision and decision.blocked)
        if record:
            self.counts["blocked"] += blocked
        redacted = None
        if decision is not None and not blocked and decision.redact:
            redact = functools.partial(self._redact_request, parsed, findings)
            texts = request_texts(parsed)
            redacted = redact() if self._inline(texts) else await self._on_inspection_thread(redact, _chars(texts))
        return {"refused": False, "blocked": blocked, "alert": alert, "decision": decision, "findings": findings,
                "redacted": redacted, "status": 400 if blocked else 200,
                "code": "content_policy_violation" if blocked else None}

    async def chat_once(self, messages: list[dict[str, Any]], identity: Identity, *,
                        security_mode: str | None = None, rid: str = "internal") -> dict[str, Any]:
        """Inspect, and when allowed ask the upstream and inspect its answer; for `/api/chat`."""
        verdict = await self.analyse_chat(messages, identity, security_mode=security_mode, rid=rid)
        if verdict["refused"] or verdict["blocked"]:
            return {**verdict, "answer": None}
        policy = self.policy.current
        body: dict[str, Any] = {"model": "demo-mini", "messages": messages}
        hardened = hardening.harden(body, security_mode or policy.security_mode,
                                    self.canary if policy.canary else None)
        headers = upstream_headers({"Content-Type": "application/json"}, authorization=self.upstream.authorization,
                                   request_id=rid)
        try:
            target = resolve("POST", "/v1/chat/completions", base=self.upstream.base_path).upstream
            up = await self.upstream.send("POST", target, headers, orjson.dumps(hardened or body))
        except UpstreamError as exc:
            return {**verdict, "answer": None, "status": exc.status, "code": exc.code}
        try:
            answer = strict_json.loads(await up.read()) if up.status < 400 else None
        except ValueError:  # not JSON, or a repeated key: not read, not relayed
            answer = None
        finally:
            up.release()
        if not isinstance(answer, dict):
            return {**verdict, "answer": None, "status": 502, "code": "upstream_error"}
        if too_many_parts(answer, self.settings.limits.max_answer_parts) is not None:
            return {**verdict, "answer": None, "status": 502, "code": "upstream_too_many_parts"}
        parsed = ParsedRequest("chat/completions", body, False, None)
        response_alert_before = self.alerts.counts["alerts"]
        changed = (await self._inspect_answer(answer, parsed.endpoint, identity, policy, rid)
                   if self.soc_enabled else None)
        if changed is WITHHELD:
            return {**verdict, "answer": None, "status": 502, "code": "content_policy_violation",
                    "response_alert": True}
        final = changed or answer
        choice = (final.get("choices") or [{}])[0]
        return {**verdict, "answer": (choice.get("message") or {}).get("content"),
                "finish_reason": choice.get("finish_reason"),
                "response_alert": self.alerts.counts["alerts"] > response_alert_before}


LARGE_TEXT_CHARS = 256 * 1024  # texts above this are inspected on the large lane's thread


@dataclass
class _Lane:
    """One inspection thread and the number of inspections waiting for it or on it."""

    pool: ThreadPoolExecutor
    queued: int = 0


def _chars(items: list[TextItem]) -> int:
    return sum(map(len, map(_TEXT, items)))


WITHHELD = object()  # an answer the content policy keeps from the client whole
_UNMASKABLE = frozenset({IDENTIFIERS, OPAQUE_TEXT, ""})  # a hit there withholds the whole answer
_OPAQUE_THREATS = ("secret_leakage",)


def _withheld(rid: str) -> web.Response:
    resp = json_error(502, WITHHELD_MESSAGE,
                      code="content_policy_violation", err_type="server_error", request_id=rid)
    resp._firewall_outcome = "answer_withheld"  # type: ignore[attr-defined]
    return resp


def _text_type(content_type: str) -> str:
    """The media type a text answer is relayed with: the upstream's when it is a text type."""
    return content_type if re.fullmatch(r"text/[a-z0-9.+-]{1,40}", content_type) else "text/plain"


async def _answer_head(up: Http1Response) -> bytes:
    """The first bytes of an answer: enough to tell an SSE stream from the rest (or all of it)."""
    head = b""
    while len(head.lstrip()) < HEAD_BYTES:
        chunk = await up.content.readany()
        if not chunk:
            break
        head += chunk
    return head


def _mark_content_filter(answer: Any, path: str) -> None:
    if path.startswith("output") and isinstance(answer, dict):  # Responses API
        answer["status"] = "incomplete"
        answer["incomplete_details"] = {"reason": "content_filter"}
    elif path.startswith("choices[") and isinstance(answer, dict):
        idx = int(path[len("choices["):path.index("]")])
        choice = answer["choices"][idx]
        choice["finish_reason"] = "content_filter"
        message = choice.get("message")
        if isinstance(message, dict):
            message.pop("tool_calls", None)
