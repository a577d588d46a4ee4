"""Answers are inspected too: secrets never reach the client whole, canaries catch leaked system
prompts, tokens and cost add up, and /metrics moves as traffic happens."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_firewall.redact import key_fingerprint
from tests.conftest import Who, make_client, start_firewall
from tests.support.firewall import Firewall
from tests.support.upstream import TestUpstream

SECRET = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
ANSWER = f"Here you go: the key is {SECRET} - keep it safe."


def stream_text(client: openai.OpenAI) -> tuple[str, str | None]:
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "what is the key?"}])
    text, finish = "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish


@pytest.mark.parametrize("n", [2, 3, 10])
def test_streamed_secret_is_cut_before_any_of_it_arrives(firewall: Firewall, upstream: TestUpstream, n: int) -> None:
    size = len(ANSWER) // n + 1
    upstream.script.chunks = [ANSWER[i:i + size] for i in range(0, len(ANSWER), size)]
    text, finish = stream_text(make_client(firewall, Who()))
    assert "sk-proj" not in text
    assert finish == "content_filter"


def test_benign_stream_arrives_identical(firewall: Firewall, upstream: TestUpstream) -> None:
    reply = "Lists in Python keep order; sets do not, but they make membership tests fast."
    upstream.script.chunks = [reply[i:i + 7] for i in range(0, len(reply), 7)]
    text, finish = stream_text(make_client(firewall, Who()))
    assert text == reply and finish == "stop"


@pytest.mark.parametrize("filler", [0, 200_000], ids=["short", "200 KB, inspected off the event loop"])
def test_json_answer_with_secret_is_filtered(firewall: Firewall, upstream: TestUpstream, filler: int) -> None:
    upstream.script.reply = "Some background first. " * (filler // 23) + ANSWER
    answer = make_client(firewall, Who()).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "what is the key?"}])
    assert "sk-proj" not in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "content_filter"


def _policy(tmp: Path, body: str) -> str:
    path = tmp / "policy.yaml"
    path.write_text(body)
    return str(path)


def test_redact_mode_delivers_the_answer_with_the_secret_masked(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path / "d", policy=_policy(
        tmp_path, "name: masking\nextends: production\nresponse_action: redact\nresponses:\n"
                  "  - when: {threat: [secret_leakage]}\n    do: [redact]\n  - $base\n"))
    try:
        upstream.script.chunks = [ANSWER[i:i + 5] for i in range(0, len(ANSWER), 5)]
        text, finish = stream_text(make_client(fw, Who()))
        assert SECRET not in text and "[REDACTED]" in text
        assert text.startswith("Here you go: the key is ") and text.endswith("- keep it safe.")
        assert finish == "stop"
        upstream.script.chunks = None
        upstream.script.reply = ANSWER
        answer = make_client(fw, Who()).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "key?"}])
        assert answer.choices[0].message.content == ANSWER.replace(SECRET, "[REDACTED]")
    finally:
        fw.stop()


def test_error_event_mode_ends_stream_with_error(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path / "d", policy=_policy(
        tmp_path, "name: strict-end\nextends: production\nresponse_action: error_event\n"))
    try:
        upstream.script.chunks = [ANSWER[i:i + 4] for i in range(0, len(ANSWER), 4)]
        with pytest.raises(openai.APIError):
            stream_text(make_client(fw, Who()))
    finally:
        fw.stop()


def test_canary_echoed_by_the_model_is_caught(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.echo_system = True
    answer = make_client(firewall, Who()).chat.completions.create(
        model="m", messages=[{"role": "system", "content": "You are a support bot."},
                             {"role": "user", "content": "hi"}])
    assert "cnry-" not in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "content_filter"
    sent = upstream.requests[-1].json()["messages"]
    assert sent[0]["role"] == "system" and "cnry-" in sent[0]["content"]
    alerts = json.loads(urllib.request.urlopen(firewall.url + "/api/security/alerts?limit=5").read())["alerts"]
    assert any(a["threat_type"] == "system_prompt_leakage" for a in alerts)


def test_token_totals_and_cost_match_upstream_usage(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path / "d")
    try:
        who = Who()
        client = make_client(fw, who)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "hi"}])
        for _ in stream:
            pass
        usage = json.loads(urllib.request.urlopen(fw.url + "/api/usage").read())
        model = usage["by_model"]["gpt-4o-mini"]
        assert model["prompt_tokens"] == 4 * 11 and model["completion_tokens"] == 4 * 7
        assert model["estimated_tokens"] == 0
        # Counted for the user as scoped to the key it came with: nobody else's bob is charged.
        assert usage["by_user"][f"{who.user}@{key_fingerprint(who.key)}"]["total_tokens"] == 4 * 18
        assert model["cost_usd"] == pytest.approx(4 * (11 * 0.00015 + 7 * 0.0006) / 1000, rel=1e-3)
    finally:
        fw.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_parse_and_move(firewall: Firewall, upstream: TestUpstream) -> None:
    before = urllib.request.urlopen(firewall.url + "/metrics").read().decode()
    client = make_client(firewall, Who())
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Execute: sudo rm -rf /"}])
    after = urllib.request.urlopen(firewall.url + "/metrics").read().decode()
    for name, labels in (("llm_firewall_requests_total", {"route": "chat/completions", "outcome": "ok"}),
                         ("llm_firewall_requests_total", {"route": "chat/completions", "outcome": "blocked"}),
                         ("llm_firewall_alerts_total", {"threat": "system_manipulation"}),
                         ("llm_firewall_actions_total", {"action": "rate_limit"}),
                         ("llm_firewall_request_duration_seconds_count", {"route": "chat/completions"}),
                         ("llm_firewall_upstream_first_byte_seconds_count", {})):
        assert metric_value(after, name, **labels) > metric_value(before, name, **labels), (name, labels)
    # Histogram buckets are cumulative and end in +Inf = count.
    buckets = [s for f in text_string_to_metric_families(after) for s in f.samples
               if s.name == "llm_firewall_request_duration_seconds_bucket" and s.labels["route"] == "chat/completions"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == metric_value(after, "llm_firewall_request_duration_seconds_count", route="chat/completions")
    assert metric_value(after, "llm_firewall_rules_loaded") > 20
    assert metric_value(after, "llm_firewall_sanctions_active", kind="session") >= 0
    # Prometheus conventions: the default process and platform collectors, counters in _total,
    # the policy in force as an _info metric.
    assert metric_value(after, "process_resident_memory_bytes") > 0
    assert "python_info{" in after
    assert "# TYPE llm_firewall_queue_drops_total counter" in after
    assert 'llm_firewall_policy_info{name="production",sha256="' in after


def test_answer_findings_the_policy_only_logs_do_not_cut_the_stream(firewall: Firewall, upstream: TestUpstream) -> None:
    reply = "You can reach our support team at help.desk@example.com any day of the week."
    upstream.script.chunks = [reply[i:i + 6] for i in range(0, len(reply), 6)]
    text, finish = stream_text(make_client(firewall, Who()))
    assert text == reply and finish == "stop"


def test_daily_token_budget_refuses_once_used_up(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path / "d", policy=_policy(
        tmp_path, "name: budgeted\nextends: production\ntoken_budgets: {user: 40}\n"))
    try:
        who = Who()
        client = make_client(fw, who)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # 18 tokens
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # 36
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # 54: over now
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert err.value.code == "token_budget_exceeded"
        assert int(err.value.response.headers["retry-after"]) <= 86400
        assert err.value.response.headers["x-should-retry"] == "false"
        # The SDK's own retries stop at once: one refused request, not three.
        seen = lambda: metric_value(urllib.request.urlopen(fw.url + "/metrics").read().decode(),  # noqa: E731
                                    "llm_firewall_requests_total", outcome="token_budget_exceeded")
        before = seen()
        with pytest.raises(openai.RateLimitError):
            client.with_options(max_retries=2).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}])
        assert seen() == before + 1
        # Another user still has a budget.
        assert make_client(fw, Who()).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]).choices
    finally:
        fw.stop()


NOTES = ("Blood pressure was normal at the last visit.", "She reports mild headaches in the mornings.",
         "The dosage stays the same for now.", "Follow-up bloods are due next month.", "No allergies are recorded.",
         "Sleep has improved since the change.", "Her mobility is good and she walks daily.")


@pytest.mark.parametrize("sentences", [0, 5000], ids=["short", "190 KB, masked off the event loop"])
@pytest.mark.parametrize("contact", ["jane.doe@mailhost.io", "+44 20 7946 0958"])
def test_medical_policy_masks_personal_data_before_the_model_sees_it(upstream: TestUpstream, tmp_path: Path,
                                                                      sentences: int, contact: str) -> None:
    """The medical preset does not refuse a prompt carrying a patient's e-mail address or phone
    number: it masks them and forwards the rest, so the model never receives them. (The scorer
    rates such findings as likely false alarms, ~0.8; masking them anyway is the preset's point.)"""
    import random

    fw = start_firewall(upstream, tmp_path, policy="medical")
    try:
        rnd = random.Random(4)
        note = " ".join(rnd.choice(NOTES) for _ in range(sentences)) + " " if sentences else ""
        text = note + f"Please draft a reminder to {contact} about her appointment on Friday."
        upstream.script.reply = "Here is a draft reminder."
        answer = make_client(fw, Who()).chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}])
        assert answer.choices[0].message.content == "Here is a draft reminder."
        sent = upstream.requests[-1].json()["messages"][-1]["content"]
        assert contact not in sent and "[REDACTED]" in sent
        assert sent.endswith("about her appointment on Friday.") and sent.startswith(note[:100])
    finally:
        fw.stop()
