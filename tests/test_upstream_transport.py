"""How the firewall reaches its upstream: its own variables before the clients' ones, a refused
self-loop, credentials in the URL, a private CA, a client certificate, and a CONNECT proxy from
HTTPS_PROXY / NO_PROXY. Real TLS (certificates from trustme), a real tunnelling proxy, the real
firewall and the openai SDK."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import trustme

from tests.conftest import Who, make_client
from tests.support.connect_proxy import ConnectProxy
from tests.support.firewall import ROOT, Firewall, free_port
from tests.support.upstream import TestUpstream


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_upstream(ca: trustme.CA) -> Iterator[TestUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = TestUpstream(host="localhost", ssl_context=context).start()
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy().start()
    yield server
    server.stop()


def _ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _ask(fw: Firewall) -> str:
    reply = make_client(fw, Who()).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    return reply.choices[0].message.content or ""


def test_tls_upstream_with_a_private_ca_through_a_connect_proxy(ca, tls_upstream, proxy, tmp_path) -> None:
    fw = Firewall(upstream=tls_upstream.base_url, data_dir=tmp_path / "d", env={
        "HTTPS_PROXY": proxy.url, "NO_PROXY": "", "LLM_FIREWALL_UPSTREAM_CA_FILE": _ca_file(ca, tmp_path)}).start()
    try:
        assert _ask(fw) == "Hello from the test upstream."
        assert proxy.tunnels == [f"localhost:{tls_upstream.port}"]  # through the tunnel, TLS inside it
    finally:
        fw.stop()


def test_without_the_private_ca_the_upstream_certificate_is_refused(tls_upstream, tmp_path) -> None:
    fw = Firewall(upstream=tls_upstream.base_url, data_dir=tmp_path / "d").start()
    try:
        with pytest.raises(openai.APIStatusError) as err:
            _ask(fw)
        assert err.value.status_code == 502
    finally:
        fw.stop()


def test_no_proxy_exempts_the_upstream_host(ca, tls_upstream, proxy, tmp_path) -> None:
    fw = Firewall(upstream=tls_upstream.base_url, data_dir=tmp_path / "d", env={
        "HTTPS_PROXY": proxy.url, "NO_PROXY": "localhost",
        "LLM_FIREWALL_UPSTREAM_CA_FILE": _ca_file(ca, tmp_path)}).start()
    try:
        assert _ask(fw) == "Hello from the test upstream."
        assert proxy.tunnels == []
    finally:
        fw.stop()


def test_client_certificate_for_an_upstream_that_requires_one(ca, tmp_path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server = TestUpstream(host="localhost", ssl_context=context).start()
    client_cert = ca.issue_cert("firewall.internal")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert))
    client_cert.private_key_pem.write_to_path(str(key))
    env = {"LLM_FIREWALL_UPSTREAM_CA_FILE": _ca_file(ca, tmp_path)}
    try:
        without = Firewall(upstream=server.base_url, data_dir=tmp_path / "a", env=env).start()
        try:
            with pytest.raises(openai.APIStatusError):
                _ask(without)
        finally:
            without.stop()
        fw = Firewall(upstream=server.base_url, data_dir=tmp_path / "b", env={
            **env, "LLM_FIREWALL_UPSTREAM_CLIENT_CERT": str(cert),
            "LLM_FIREWALL_UPSTREAM_CLIENT_KEY": str(key)}).start()
        try:
            assert _ask(fw) == "Hello from the test upstream."
        finally:
            fw.stop()
    finally:
        server.stop()


def test_own_upstream_variables_win_over_the_clients_ones(upstream: TestUpstream, tmp_path) -> None:
    fw = Firewall(data_dir=tmp_path / "d", env={
        "LLM_FIREWALL_UPSTREAM_URL": upstream.base_url, "LLM_FIREWALL_UPSTREAM_API_KEY": "sk-upstream-own-key",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-meant-for-clients"}).start()
    try:
        assert _ask(fw) == "Hello from the test upstream."
        assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-upstream-own-key"
        own = {"x-goog-api-key": "AIzaSy-client-own-key", "Ocp-Apim-Subscription-Key": "client-subscription",
               "anthropic-api-key": "sk-ant-client", "x-api-key": "client-x", "api-key": "client-azure",
               "x-goog-user-project": "client-billing", "OpenAI-Organization": "org-client"}
        reply = make_client(fw, Who()).with_options(default_headers=own).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello from the test upstream."
        sent = {k.lower() for k in upstream.requests[-1].headers}
        assert sent.isdisjoint(k.lower() for k in own), "a client credential reached the upstream"
        assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-upstream-own-key"
    finally:
        fw.stop()
    legacy = Firewall(data_dir=tmp_path / "e", env={"OPENAI_BASE_URL": upstream.base_url,
                                                    "OPENAI_API_KEY": "sk-legacy-upstream"}).start()
    try:
        assert _ask(legacy) == "Hello from the test upstream."  # the old variables keep working
        assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-legacy-upstream"
    finally:
        legacy.stop()


def test_credentials_in_the_upstream_url_are_sent_as_basic_auth_and_never_logged(upstream, tmp_path) -> None:
    url = upstream.base_url.replace("http://", "http://gateway:pa%40ss-9f3e2c@")
    fw = Firewall(upstream=url, data_dir=tmp_path / "d").start()
    try:
        assert _ask(fw) == "Hello from the test upstream."
        sent = upstream.requests[-1].headers["Authorization"]
        assert sent == "Basic " + base64.b64encode(b"gateway:pa@ss-9f3e2c").decode()
    finally:
        fw.stop()
    assert "pa%40ss-9f3e2c" not in fw.logs() and "pa@ss-9f3e2c" not in fw.logs()


def test_an_upstream_that_is_the_firewall_itself_is_refused_at_startup(tmp_path) -> None:
    port = free_port()
    for host in ("127.0.0.1", "localhost"):
        done = subprocess.run([sys.executable, "-m", "llm_firewall", "serve", "--port", str(port),
                               "--upstream", f"http://{host}:{port}/v1", "--data-dir", str(tmp_path / "d")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 2
        assert "is this firewall itself" in done.stderr and "LLM_FIREWALL_UPSTREAM_URL" in done.stderr
