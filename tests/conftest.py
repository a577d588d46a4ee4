"""Shared fixtures: a local test upstream, the real firewall in a subprocess, real openai clients."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.firewall import Firewall
from tests.support.upstream import TestUpstream

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def upstream() -> Iterator[TestUpstream]:
    server = TestUpstream().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()


def start_firewall(upstream: TestUpstream | None, tmp: Path, **kwargs: object) -> Firewall:
    env = {"LLM_FIREWALL_TRUSTED_PROXIES": "127.0.0.1/32", **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return Firewall(upstream=upstream.base_url if upstream else None, data_dir=tmp, env=env, **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def firewall(upstream: TestUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    """The firewall with the production policy in front of the test upstream; loopback is a trusted
    proxy so each test can speak for its own client address through X-Forwarded-For."""
    fw = start_firewall(upstream, tmp_path_factory.mktemp("fw"))
    yield fw
    fw.stop()


class Who:
    """A distinct synthetic client per test, so sanctions from one test never touch another."""

    def __init__(self) -> None:
        n = next(_counter)
        self.ip = f"203.0.113.{n % 250 + 1}" if n < 250 else f"198.51.{n // 250}.{n % 250 + 1}"
        self.user = f"user-{n}"
        self.session = f"session-{n}"
        # Its own API key: user and session ids are scoped to the key, and sanctions on them are
        # held by the key too, so clients sharing one key would share each other's sanctions.
        self.key = f"sk-test-client-{n:04d}-0123456789abcdef"

    def headers(self, **overrides: str) -> dict[str, str]:
        h = {"X-Forwarded-For": self.ip, "X-User-ID": self.user, "X-Session-ID": self.session}
        h.update(overrides)
        return h


@pytest.fixture
def who() -> Who:
    return Who()


CLIENT_KEY = "sk-test-client-key-0123456789abcdef"  # a client without a `Who` of its own


def make_client(fw: Firewall, who: Who | None = None, *, api_key: str | None = None, **headers: str) -> openai.OpenAI:
    hdrs = who.headers() if who else {}
    hdrs.update(headers)
    return openai.OpenAI(base_url=fw.base_url, api_key=api_key or (who.key if who else CLIENT_KEY),
                         default_headers=hdrs, max_retries=0, timeout=20)


def make_async_client(fw: Firewall, who: Who | None = None, *, api_key: str | None = None,
                      **headers: str) -> openai.AsyncOpenAI:
    hdrs = who.headers() if who else {}
    hdrs.update(headers)
    return openai.AsyncOpenAI(base_url=fw.base_url, api_key=api_key or (who.key if who else CLIENT_KEY),
                              default_headers=hdrs, max_retries=0, timeout=20)


@pytest.fixture
def client(firewall: Firewall, who: Who) -> openai.OpenAI:
    return make_client(firewall, who)
