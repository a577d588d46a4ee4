import asyncio

from llm_firewall.notify import WebhookNotifier


def recording_sleep(log: list[float]):
    async def sleep(s: float) -> None:
        log.append(s)
        await asyncio.sleep(0)

    return sleep


async def test_target_up_delivers_once_in_generic_json(receiver):
    dead: list = []
    n = WebhookNotifier(on_dead_letter=lambda t, p, e: dead.append((t, p, e)))
    try:
        ok = await n.send(receiver.url, {"threat": "malicious_input", "severity": "high",
                                         "note": "key sk-abcdefghijklmnop1234 seen"})
    finally:
        await n.close()
    assert ok is True
    assert len(receiver.hits) == 1
    assert receiver.hits[0]["threat"] == "malicious_input"
    assert "sk-abcdefghijklmnop1234" not in receiver.hits[0]["note"]
    assert dead == []


async def test_slack_format_sends_a_text_line(receiver):
    n = WebhookNotifier()
    try:
        assert await n.send(receiver.url, {"severity": "critical", "threat": "data_exfiltration",
                                           "title": "Credential request", "ip": "203.0.113.9"}, fmt="slack")
    finally:
        await n.close()
    (hit,) = receiver.hits
    assert set(hit) == {"text"}
    assert "CRITICAL data_exfiltration Credential request" in hit["text"]
    assert "203.0.113.9" in hit["text"]


async def test_failing_target_is_retried_with_backoff_then_dead_lettered(receiver):
    receiver.status = 503
    slept: list[float] = []
    dead: list = []

    async def on_dead(target, payload, error):
        dead.append((target, payload, error))

    n = WebhookNotifier(on_dead_letter=on_dead, attempts=4, base_s=0.1, max_s=1.0,
                        sleep=recording_sleep(slept))
    try:
        ok = await n.send(receiver.url, {"text": "hello", "token": "password=hunter2secret"})
    finally:
        await n.close()
    assert ok is False
    assert len(receiver.hits) == 4
    assert len(slept) == 3 and slept[0] <= 0.1 < slept[2]  # exponential growth
    (target, payload, error) = dead[0]
    assert "T0KEN" not in target  # the hook's path (its secret) never leaves the notifier
    assert "hunter2secret" not in str(payload)
    assert "503" in error


async def test_unreachable_target_opens_breaker_and_then_short_circuits(unused_url):
    url = f"{unused_url}/hook"
    dead: list = []
    changes: list = []
    n = WebhookNotifier(on_dead_letter=lambda t, p, e: dead.append(e), attempts=3, base_s=0.0,
                        max_s=0.0, failure_threshold=3, reset_timeout_s=60,
                        on_circuit_change=lambda name, old, new: changes.append(new))
    try:
        assert await n.send(url, {"text": "a"}) is False
        assert changes == ["open"]
        attempts_before = n.counts["attempts"]
        assert await n.send(url, {"text": "b"}) is False
        assert n.counts["attempts"] == attempts_before  # no call while open
    finally:
        await n.close()
    assert len(dead) == 2 and "CircuitOpenError" in dead[1]
    assert n.counts["short_circuited"] == 1


async def test_rejected_payload_is_not_retried_and_bad_target_never_raises(receiver):
    receiver.status = 400
    dead: list = []
    n = WebhookNotifier(on_dead_letter=lambda t, p, e: dead.append(e), attempts=5, base_s=0)
    try:
        assert await n.send(receiver.url, {"text": "x"}) is False
        assert len(receiver.hits) == 1
        assert await n.send("not-a-url", {"text": "x"}) is False
        assert await n.send(receiver.url, {"text": "x"}, fmt="xml") is False
    finally:
        await n.close()
    assert len(dead) == 3


async def test_target_that_recovers_gets_the_message_once(receiver):
    receiver.fail_first = 2
    dead: list = []
    n = WebhookNotifier(attempts=5, base_s=0.0, max_s=0.0, on_dead_letter=lambda *a: dead.append(a))
    try:
        assert await n.send(receiver.url, {"text": "x"})
    finally:
        await n.close()
    assert len(receiver.hits) == 3 and receiver.hits[-1] == {"text": "x"}
    assert dead == [] and n.counts["sent"] == 1
