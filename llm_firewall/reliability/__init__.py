"""Reliability primitives shared by the proxy and the SOC: circuit breaker, retry, idempotency."""

from llm_firewall.reliability.circuit import CircuitBreaker, CircuitOpenError
from llm_firewall.reliability.idempotency import ExecutionTracker, MemoryClaimStore
from llm_firewall.reliability.retry import backoff_delays, retry_async

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "ExecutionTracker",
    "MemoryClaimStore",
    "backoff_delays",
    "retry_async",
]
