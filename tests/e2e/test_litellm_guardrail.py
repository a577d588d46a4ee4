"""examples/litellm/guardrail.py in a real LiteLLM proxy, in front of the test upstream, asking a
real firewall (with a guard token) through `POST /api/guard`: the seed scenarios end as they do
behind the firewall itself, leaked secrets never reach the client, repeat offenders are refused.

The proxy runs from `.venv-litellm` (scripts/test installs examples/litellm/requirements.txt
there), or from the `litellm` executable named by LLM_FIREWALL_TEST_LITELLM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from llm_firewall.tools import scenario_catalog
from tests.conftest import Who, start_firewall
from tests.support.firewall import ROOT, Firewall, free_port
from tests.support.upstream import TestUpstream

EXAMPLE = ROOT / "examples" / "litellm"
MASTER_KEY = "sk-litellm-master-5f2a9c81d7e34b6a90c1e2d3f4a5b6c7"
GUARD_TOKEN = "guard-token-for-litellm-0123456789"
SECRET = "sk-proj-Q7vLm2Xc9RtB4nZs8KdW1yHf6JpE3uTa0GiOq5"


def litellm_executable() -> str:
    named = os.environ.get("LLM_FIREWALL_TEST_LITELLM") or str(ROOT / ".venv-litellm" / "bin" / "litellm")
    if not Path(named).is_file():
        raise RuntimeError(f"no LiteLLM proxy at {named}: run scripts/test, or `python3 -m venv .venv-litellm && "
                           ".venv-litellm/bin/pip install -r examples/litellm/requirements.txt`")
    return named


class LiteLLM:
    """The LiteLLM proxy as a subprocess, with the example's guardrails and a model on `upstream`."""

    def __init__(self, upstream: TestUpstream, firewall: Firewall, workdir: Path, **options: Any) -> None:
        shutil.copy(EXAMPLE / "guardrail.py", workdir / "guardrail.py")  # found beside the config
        config = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
        for rail in config["guardrails"]:  # the guardrail's own settings, as an operator writes them
            rail["litellm_params"].update(options)
        config["model_list"] = [{"model_name": "demo-mini", "litellm_params": {
            "model": "openai/demo-mini", "api_base": upstream.base_url, "api_key": "sk-upstream-key"}}]
        config["general_settings"] = {"use_x_forwarded_for": True}  # the test clients name their address
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log_path = workdir / "litellm.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_FIREWALL_", "LITELLM_"))}
        env.update({"LLM_FIREWALL_URL": firewall.url, "LLM_FIREWALL_GUARD_TOKEN": GUARD_TOKEN,
                    "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_TELEMETRY": "False"})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [litellm_executable(), "--config", str(workdir / "config.yaml"), "--host", "127.0.0.1",
                 "--port", str(self.port)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"LiteLLM did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def client(self, who: Who) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=MASTER_KEY, max_retries=0,
                             timeout=30, default_headers={"X-Forwarded-For": who.ip})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def guarded(upstream: TestUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiteLLM, Firewall]]:
    firewall = start_firewall(upstream, tmp_path_factory.mktemp("fw"), env={"LLM_FIREWALL_GUARD_TOKEN": GUARD_TOKEN})
    proxy = LiteLLM(upstream, firewall, tmp_path_factory.mktemp("litellm"))
    try:
        proxy.wait_ready()
        yield proxy, firewall
    finally:
        proxy.stop()
        firewall.stop()


def ask(proxy: LiteLLM, who: Who, text: str) -> Any:
    """The answer, or the error LiteLLM relayed."""
    try:
        return proxy.client(who).chat.completions.create(
            model="demo-mini", user=who.user, messages=[{"role": "user", "content": text}])
    except openai.APIStatusError as exc:
        return exc


def firewall_code(error: openai.APIStatusError) -> str:
    """The firewall's OpenAI error code, as LiteLLM relays a guardrail's refusal."""
    body = error.body if isinstance(error.body, dict) else {}
    return ((body.get("provider_specific_fields") or {}).get("error") or {}).get("code", "")


def prompts_received(upstream: TestUpstream) -> list[str]:
    return [r.json()["messages"][-1]["content"] for r in upstream.requests if r.path.endswith("/chat/completions")]


@pytest.mark.parametrize("case", list(scenario_catalog.SEED), ids=lambda c: c.name)
def test_seed_scenarios_end_as_behind_the_firewall(guarded: tuple[LiteLLM, Firewall], upstream: TestUpstream,
                                                   case: scenario_catalog.SeedCase) -> None:
    proxy, _ = guarded
    outcome = ask(proxy, Who(), case.message)
    if case.blocked:
        assert isinstance(outcome, openai.BadRequestError), outcome
        assert firewall_code(outcome) == "content_policy_violation", outcome.body
        assert case.message not in prompts_received(upstream)  # never reached the model
    else:
        assert not isinstance(outcome, Exception), outcome
        assert outcome.choices[0].message.content == "Hello from the test upstream."
        assert prompts_received(upstream) == [case.message]


def test_a_leaked_secret_never_reaches_the_client(guarded: tuple[LiteLLM, Firewall], upstream: TestUpstream) -> None:
    proxy, _ = guarded
    upstream.script.reply = f"Sure. The deployment key is {SECRET}."
    answer = ask(proxy, Who(), "What is the deployment key?")
    assert not isinstance(answer, Exception), answer
    assert answer.choices[0].message.content == ""
    assert answer.choices[0].finish_reason == "content_filter"


def stream(proxy: LiteLLM, who: Who, text: str) -> tuple[str, str | None]:
    """The streamed answer's text and last finish reason."""
    parts, finish = [], None
    events = proxy.client(who).chat.completions.create(
        model="demo-mini", user=who.user, stream=True, messages=[{"role": "user", "content": text}])
    for event in events:
        for choice in event.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(parts), finish


def test_streamed_answers_are_judged_whole(guarded: tuple[LiteLLM, Firewall], upstream: TestUpstream) -> None:
    proxy, _ = guarded
    upstream.script.chunks = ["Saturn, Jupiter, ", "Uranus and ", "Neptune."]
    assert stream(proxy, Who(), "Which planets have rings?") == ("Saturn, Jupiter, Uranus and Neptune.", "stop")
    upstream.script.chunks = ["Sure. The deployment key is ", SECRET[:12], SECRET[12:], "."]
    text, finish = stream(proxy, Who(), "What is the deployment key?")
    assert SECRET[:12] not in text and SECRET[12:] not in text
    assert finish == "content_filter"


def test_repeat_offenders_are_refused_by_litellm_too(guarded: tuple[LiteLLM, Firewall],
                                                     upstream: TestUpstream) -> None:
    proxy, _ = guarded
    who = Who()
    attack = next(c.message for c in scenario_catalog.SEED if c.name == "prompt_injection")
    for _ in range(3):  # the production ladder: three prompt-injection strikes suspend the user
        outcome = ask(proxy, who, attack)
        assert isinstance(outcome, openai.BadRequestError) and firewall_code(outcome) == "content_policy_violation"
    refused = ask(proxy, who, "Which planets have rings?")
    assert isinstance(refused, openai.PermissionDeniedError), refused
    assert firewall_code(refused) == "user_suspended"
    assert 0 < int(refused.response.headers["retry-after"]) <= 15 * 60  # the first suspension: 15 minutes
    assert prompts_received(upstream) == []
    other = ask(proxy, Who(), "Which planets have rings?")  # another user of the same gateway
    assert not isinstance(other, Exception), other


def test_embeddings_are_judged_and_other_calls_refused(guarded: tuple[LiteLLM, Firewall],
                                                       upstream: TestUpstream) -> None:
    proxy, _ = guarded
    attack = next(c.message for c in scenario_catalog.SEED if c.name == "prompt_injection")
    client = proxy.client(Who())
    assert len(client.embeddings.create(model="demo-mini", input=["Which planets have rings?"]).data) == 1
    with pytest.raises(openai.BadRequestError) as blocked:
        client.embeddings.create(model="demo-mini", input=[attack])
    assert firewall_code(blocked.value) == "content_policy_violation"
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="demo-mini", prompt="A lighthouse at dusk")
    assert "uninspected_call" in str(refused.value.body)  # LiteLLM relays it in the message here
    assert [r.path for r in upstream.requests] == ["/v1/embeddings"]


def test_a_firewall_that_cannot_be_asked_refuses_the_call(upstream: TestUpstream, tmp_path: Path) -> None:
    firewall = start_firewall(upstream, tmp_path / "fw", env={"LLM_FIREWALL_GUARD_TOKEN": "another-token-0123456789"})
    # Its token is refused (the guard answers 401); calls the guard never reads are let through.
    try:
        proxy = LiteLLM(upstream, firewall, tmp_path, other_calls="allow")
    except BaseException:
        firewall.stop()
        raise
    try:
        proxy.wait_ready()
        outcome = ask(proxy, Who(), "Which planets have rings?")
        assert isinstance(outcome, openai.APIStatusError) and outcome.status_code == 503, outcome
        assert firewall_code(outcome) == "firewall_unavailable"
        assert prompts_received(upstream) == []
        try:
            proxy.client(Who()).images.generate(model="demo-mini", prompt="A lighthouse at dusk")
        except openai.APIError:
            pass  # the test upstream's answer is no image: only its arrival matters here
        assert [r.path for r in upstream.requests if "images" in r.path] == ["/v1/images/generations"]
    finally:
        proxy.stop()
        firewall.stop()
