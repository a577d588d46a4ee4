"""The admin API and the live feed from a hostile page: DNS rebinding and foreign origins.

A page on `rebind.evil.example` whose name is made to resolve to 127.0.0.1 is, to the browser,
same-origin with itself: it sends `Host: rebind.evil.example:PORT` and a matching `Origin`. The
requests below are exactly what that browser sends.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.api.auth import loopback_host
from tests.support.firewall import Firewall
from tests.support.raw_http import read_head

TOKEN = "s3cret-admin-token-for-tests"


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    server = Firewall(data_dir=tmp_path_factory.mktemp("admin")).start()  # no admin token: the demo set-up
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fw_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    server = Firewall(data_dir=tmp_path_factory.mktemp("admin-token"),
                      env={"LLM_FIREWALL_ADMIN_TOKEN": TOKEN}).start()
    yield server
    server.stop()


def call(fw: Firewall, method: str, path: str, host: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request with the given Host header (and an Origin naming that same host)."""
    conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=20)
    try:
        hdrs = {"Host": host, "Origin": f"http://{host}", **(headers or {})}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def ws_handshake(fw: Firewall, host: str, query: str = "") -> tuple[int, bytes]:
    """The browser's WebSocket opening request for /ws; the status and what followed."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws{query} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", fw.port), timeout=20) as sock:
        sock.sendall(request.encode())
        head, rest = read_head(sock)
        if b"Content-Length" in head and not rest:
            rest = sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest


def soc_enabled(fw: Firewall) -> bool:
    status, body = call(fw, "GET", "/api/soc/status", f"127.0.0.1:{fw.port}")
    assert status == 200
    return bool(body["soc_enabled"])


# -- DNS rebinding without a token ----------------------------------------------------------------
def test_rebinding_page_cannot_switch_the_soc_off(fw: Firewall) -> None:
    status, body = call(fw, "POST", "/api/soc/toggle", f"rebind.evil.example:{fw.port}", {"enabled": False})
    assert status == 403
    assert body["error"]["code"] == "host_not_allowed"
    assert body["error"]["type"] == "permission_error"
    assert soc_enabled(fw)


@pytest.mark.parametrize("path", ["/api/soc/status", "/api/security/alerts", "/api/blocks", "/api/audit",
                                  "/api/usage", "/api/approvals", "/api/test/results"])
def test_rebinding_page_reads_nothing(fw: Firewall, path: str) -> None:
    status, body = call(fw, "GET", path, f"rebind.evil.example:{fw.port}")
    assert status == 403 and body["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("method,path,payload", [
    ("POST", "/api/test/scenario/prompt_injection", {}),
    ("POST", "/api/policy/reload", {}),
    ("POST", "/api/chat", {"message": "hello"}),
])
def test_rebinding_page_cannot_act(fw: Firewall, method: str, path: str, payload: Any) -> None:
    status, body = call(fw, method, path, f"rebind.evil.example:{fw.port}", payload)
    assert status == 403 and body["error"]["code"] == "host_not_allowed"


def test_rebinding_page_cannot_open_the_live_feed(fw: Firewall) -> None:
    status, rest = ws_handshake(fw, f"rebind.evil.example:{fw.port}")
    assert status == 403
    assert json.loads(rest)["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_the_operators_own_page_on_loopback_still_works(fw: Firewall, host: str) -> None:
    host = host.format(port=fw.port)
    status, body = call(fw, "POST", "/api/soc/toggle", host, {"enabled": False})
    assert status == 200 and body["soc_enabled"] is False
    status, body = call(fw, "POST", "/api/soc/toggle", host, {"enabled": True})
    assert status == 200 and body["soc_enabled"] is True
    assert ws_handshake(fw, host)[0] == 101


def test_a_foreign_origin_is_refused_even_on_loopback(fw: Firewall) -> None:
    status, body = call(fw, "POST", "/api/soc/toggle", f"127.0.0.1:{fw.port}", {"enabled": False},
                        headers={"Origin": "http://rebind.evil.example"})
    assert status == 403 and body["error"]["code"] == "cross_origin"
    assert soc_enabled(fw)



def test_a_browser_request_marked_cross_site_without_an_origin_is_refused(fw: Firewall) -> None:
    """A form or fetch from another site that omits Origin is still named cross-site by the
    browser's Sec-Fetch-Site; the firewall believes that word."""
    conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=20)
    try:
        conn.request("POST", "/api/soc/toggle", body=json.dumps({"enabled": False}).encode(),
                     headers={"Host": f"127.0.0.1:{fw.port}", "Content-Type": "application/json",
                              "Sec-Fetch-Site": "cross-site"})
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 403 and body["error"]["code"] == "cross_origin"
    assert soc_enabled(fw)

# -- with a token, the token decides (as before) --------------------------------------------------
def test_with_a_token_any_host_needs_it_and_it_suffices(fw_token: Firewall) -> None:
    host = f"firewall.internal.example:{fw_token.port}"
    status, body = call(fw_token, "GET", "/api/soc/status", host)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _ = call(fw_token, "GET", "/api/soc/status", host, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert ws_handshake(fw_token, host)[0] == 401
    assert ws_handshake(fw_token, host, f"?token={TOKEN}")[0] == 101


# -- the decision itself --------------------------------------------------------------------------
PORTS = st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["localhost", "LocalHost", "127.0.0.1", "127.255.0.9", "[::1]", "[0:0:0:0:0:0:0:1]"]),
       PORTS)
def test_loopback_names_are_loopback(name: str, port: str) -> None:
    assert loopback_host(name + port)


LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


def _dns_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name != "localhost"
    return False


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(_dns_name),
    st.lists(LABEL, min_size=1, max_size=3).map(lambda labels: ".".join([*labels, "localhost"])),
    st.ip_addresses(v=4).filter(lambda a: not a.is_loopback).map(str),
    st.ip_addresses(v=6).filter(lambda a: not a.is_loopback).map(lambda a: f"[{a}]"),
    st.text(st.characters(blacklist_characters="0123456789"), max_size=30).filter(
        lambda t: "localhost" not in t.lower()),
), PORTS)
def test_every_other_host_is_not(name: str, port: str) -> None:
    assert not loopback_host(name + port)


@pytest.mark.parametrize("host", ["", "localhost.", "127.0.0.1.", "127.1", "2130706433", "::1", "[::1", "0.0.0.0",
                                  "localhost:80:80", "localhost:", "localhost:123456", "127.0.0.1.nip.io",
                                  "localhost@evil.example", "evil.example#localhost"])
def test_tricky_spellings_are_not_loopback(host: str) -> None:
    assert not loopback_host(host)


def test_none_is_not_loopback() -> None:
    assert not loopback_host(None)

