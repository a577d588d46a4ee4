"""Upstream faults seen from the client: fast failures, an open breaker, clean stream ends, drains."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import json
import urllib.request
import openai
import pytest

from tests.conftest import Who, make_client, start_firewall
from tests.support.firewall import Firewall, free_port
from tests.support.upstream import TestUpstream


def ask(client: openai.OpenAI, text: str = "hello") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])


def test_upstream_down_502_then_breaker_opens_then_recovers(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    fw = Firewall(upstream=f"http://127.0.0.1:{port}/v1", data_dir=tmp_path,
                  env={"LLM_FIREWALL_CIRCUIT_FAILURES": "3", "LLM_FIREWALL_CIRCUIT_RESET": "1",
                       "LLM_FIREWALL_CONNECT_TIMEOUT": "1"}).start()
    try:
        client = make_client(fw, Who())
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as err:
                ask(client)
            assert err.value.status_code == 502
        with pytest.raises(openai.APIStatusError) as err:
            ask(client)
        assert err.value.status_code == 503
        assert err.value.code == "upstream_circuit_open"
        assert int(err.value.response.headers["retry-after"]) >= 1
        up = TestUpstream(port=port).start()
        try:
            time.sleep(1.2)  # the breaker's reset timeout: the next call is a half-open probe
            assert ask(client).choices[0].message.content
            assert ask(client).choices[0].message.content  # closed again
        finally:
            up.stop()
    finally:
        fw.stop()


def test_upstream_reset_mid_stream_ends_cleanly(firewall: Firewall, upstream: TestUpstream, who: Who) -> None:
    upstream.script.chunks = [f"part{i} " for i in range(10)]
    upstream.script.reset_after_chunks = 4
    req = urllib.request.Request(firewall.base_url + "/chat/completions", method="POST",
                                 headers={**who.headers(), "Content-Type": "application/json"},
                                 data=json.dumps({"model": "m", "stream": True,
                                                  "messages": [{"role": "user", "content": "count"}]}).encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert b"upstream_error" in events[-2]
    relayed = "".join(choice["delta"].get("content") or "" for e in events[:-2]
                      for choice in json.loads(e.removeprefix(b"data: "))["choices"])
    # What was relayed came before the reset, in order; a reset may also discard data the kernel
    # had received but the firewall had not yet read (TCP RST semantics), so a prefix is all a
    # busy machine guarantees.
    assert "part0 part1 part2 part3 ".startswith(relayed), relayed


def test_slow_first_byte_is_504_and_firewall_keeps_serving(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path, env={"LLM_FIREWALL_FIRST_BYTE_TIMEOUT": "0.5",
                                                 "LLM_FIREWALL_CONNECT_TIMEOUT": "0.5"})
    try:
        upstream.script.delay_first_byte = 3.0
        client = make_client(fw, Who())
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            ask(client)
        assert err.value.status_code == 504
        assert time.monotonic() - started < 2.5
        upstream.script.delay_first_byte = 0.0
        assert ask(client).choices
        # The abandoned upstream connection was closed, not kept: only the healthy one remains open.
        conns = _established_to(upstream.port)
        assert conns <= 2, conns
    finally:
        fw.stop()


def _established_to(port: int) -> int:
    hexport = f"{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[2].endswith(":" + hexport) and parts[3] == "01":
                count += 1
    return count


def test_sigterm_drains_streams_and_exits_zero(upstream: TestUpstream, tmp_path: Path) -> None:
    fw = start_firewall(upstream, tmp_path)
    upstream.script.chunks = [f"w{i} " for i in range(30)]
    upstream.script.chunk_delay = 0.05  # about 1.5 s of streaming
    result: dict[str, object] = {}

    def consume() -> None:
        try:
            client = make_client(fw, Who())
            stream = client.chat.completions.create(model="m", stream=True,
                                                    messages=[{"role": "user", "content": "count slowly"}])
            chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
            result["text"] = "".join(chunks)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = repr(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.4)  # the stream is under way
    fw.signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", fw.port), timeout=1).close()
    except OSError:
        refused = True
    thread.join(20)
    code = fw.proc.wait(20) if fw.proc else None
    fw.stop()
    assert "error" not in result, result
    assert result["text"] == "".join(f"w{i} " for i in range(30))
    assert refused, "new connections should be refused while draining"
    assert code == 0
