"""Resources: slow and silent clients, the connection cap, and a stream that never ends.

Everything runs against the real firewall on 127.0.0.1, with small limits so each case takes a few
seconds; every wait is bounded and every socket, thread and process is closed afterwards.
"""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import openai
import pytest

from tests.conftest import Who, make_client, start_firewall
from tests.support.firewall import Firewall
from tests.support.raw_http import read_head
from tests.support.upstream import TestUpstream
from tests.support.waiting import wait_for

SLOWLORIS = 1100
WAIT_S = 20.0  # the most any case waits for the firewall to close something


class EndlessUpstream:
    """An upstream whose every answer is a stream that never ends (one event a tick), recording
    whether the other side cut the connection."""

    EVENT = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
             b'[{"index":0,"delta":{"content":"tick tock tick tock tick tock tick tock tick tock "},'
             b'"finish_reason":null}]}\n\n')

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.cut = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="endless-upstream", daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head, body = read_head(conn)
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while head and len(body) < length:
                more = conn.recv(65536)
                if not more:
                    return
                body += more
            if not head:
                return
            self.requests += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            while not self.stopping.is_set():
                try:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(self.EVENT), self.EVENT))
                except OSError:
                    self.cut.set()
                    return
                time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture(scope="module")
def endless() -> Iterator[EndlessUpstream]:
    server = EndlessUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quick(endless: EndlessUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    """The firewall with short client limits, in front of the never-ending upstream."""
    _allow_open_files(SLOWLORIS + 200)
    fw = Firewall(upstream=endless.base_url, data_dir=tmp_path_factory.mktemp("limits"),
                  env={"LLM_FIREWALL_HEADER_TIMEOUT": "3", "LLM_FIREWALL_BODY_TIMEOUT": "2",
                       "LLM_FIREWALL_KEEPALIVE_TIMEOUT": "2", "LLM_FIREWALL_STREAM_MAX_SECONDS": "2",
                       "LLM_FIREWALL_TRUSTED_PROXIES": "127.0.0.1/32"}).start()
    yield fw
    fw.stop()


@pytest.fixture(scope="module")
def capped(upstream: TestUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    fw = start_firewall(upstream, tmp_path_factory.mktemp("capped"), env={"LLM_FIREWALL_MAX_CONNECTIONS": "4"})
    yield fw
    fw.stop()


def _allow_open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"this machine allows {hard} open files; the slowloris run needs {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def healthz(port: int) -> int:
    """GET /healthz on a fresh connection; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def open_connection(port: int, head: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if head:
        sock.sendall(head)
    return sock


def read_until_closed(sock: socket.socket, trickle: bytes = b"", within: float = WAIT_S) -> tuple[bool, bytes]:
    """Read (sending `trickle` a byte every 0.1 s) until the server closes the connection or
    `within` seconds pass; (closed by the server, everything read)."""
    sock.settimeout(0.1)
    received = b""
    stop = time.monotonic() + within
    position = 0
    while time.monotonic() < stop:
        if position < len(trickle):
            try:
                sock.send(trickle[position:position + 1])
                position += 1
            except OSError:
                return True, received
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset
            return True, received
        if not data:
            return True, received
        received += data
    return False, received


def all_closed(socks: list[socket.socket], within: float = WAIT_S) -> int:
    """Wait until the server has closed every socket (or `within` passes); how many it closed."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    stop = time.monotonic() + within
    try:
        while closed < len(socks) and time.monotonic() < stop:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    finally:
        selector.close()
    return closed


def response_parts(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


# -- slow and silent clients ----------------------------------------------------------------------
def test_slowloris_run_keeps_healthz_answering_and_is_closed(quick: Firewall) -> None:
    partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    socks: list[socket.socket] = []
    try:
        for _ in range(SLOWLORIS):
            socks.append(open_connection(quick.port, partial))
        for _ in range(3):  # while the flood trickles more header lines, health checks still answer
            for sock in socks:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            assert healthz(quick.port) == 200
        # no head was ever completed: the firewall closes every one of these connections itself
        assert all_closed(socks) == SLOWLORIS
        assert healthz(quick.port) == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_trickled_request_head_is_cut(quick: Firewall) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: 1\r\n" * 100 + b"\r\n"
    with open_connection(quick.port) as sock:
        closed, received = read_until_closed(sock, trickle=head)
    assert closed and received == b""  # cut before the head completed: nothing was answered


def test_a_silent_connection_is_closed(quick: Firewall) -> None:
    with open_connection(quick.port) as sock:
        assert read_until_closed(sock) == (True, b"")


def test_an_idle_keep_alive_connection_is_closed(quick: Firewall) -> None:
    with open_connection(quick.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") as sock:
        closed, received = read_until_closed(sock)
    assert closed
    assert response_parts(received)[0] == 200


def test_a_trickled_body_is_cut_with_a_408(quick: Firewall, endless: EndlessUpstream) -> None:
    before = endless.requests
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 100}]}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    with open_connection(quick.port, head) as sock:
        closed, received = read_until_closed(sock, trickle=body)
    assert closed
    status, error = response_parts(received)
    assert status == 408
    assert error["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert endless.requests == before  # nothing half-received was forwarded


# -- a stream that never ends ---------------------------------------------------------------------
def test_a_never_ending_stream_ends_at_the_deadline_with_an_error_event(quick: Firewall,
                                                                         endless: EndlessUpstream) -> None:
    endless.cut.clear()
    client = make_client(quick, Who())
    stream = client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "hi"}])
    text = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            text.append(chunk.choices[0].delta.content or "")
    assert "time limit" in err.value.message
    assert err.value.code == "stream_timeout"
    assert "tick tock" in "".join(text)  # the stream flowed until the deadline
    assert endless.cut.wait(WAIT_S)  # and the firewall closed the upstream connection
    assert healthz(quick.port) == 200


# -- the connection cap ---------------------------------------------------------------------------
def test_at_the_cap_the_oldest_idle_connection_makes_room(capped: Firewall) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    socks = [open_connection(capped.port, request) for _ in range(4)]
    try:
        for sock in socks:  # each answered, then idle on keep-alive
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert healthz(capped.port) == 200  # a fifth connection is admitted
        assert read_until_closed(socks[0]) == (True, b"")  # by closing the oldest idle one
        socks[3].sendall(request)  # the newest is still served
        assert socks[3].recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()


def test_at_the_cap_a_slow_upload_makes_room_when_none_is_idle(capped: Firewall, upstream: TestUpstream) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"model\": \"m\", ")
    socks = [open_connection(capped.port, head) for _ in range(4)]  # four bodies that stop arriving
    try:
        assert healthz(capped.port) == 200
        assert read_until_closed(socks[0]) == (True, b"")  # the oldest upload was cut to make room
        assert upstream.requests == []
    finally:
        for sock in socks:
            sock.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(capped: Firewall,
                                                                      upstream: TestUpstream) -> None:
    upstream.script.delay_first_byte = 10.0  # long enough for all four to be in progress at once, even on a busy machine
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    socks = [open_connection(capped.port, request) for _ in range(4)]
    try:
        upstream.wait_for_requests(4, timeout=WAIT_S)
        assert len(upstream.requests) == 4  # four answers in progress: none may be cut to make room
        with open_connection(capped.port) as extra:
            closed, received = read_until_closed(extra)
        assert closed
        status, error = response_parts(received)
        assert status == 503
        assert error["error"]["code"] == "server_busy"  # type: ignore[index]
        for sock in socks:
            sock.settimeout(WAIT_S)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()
    # the handlers notice their clients left as their answers end; then the slots are free again
    assert wait_for(lambda: healthz(capped.port) == 200, WAIT_S)


def test_the_cap_is_lowered_to_fit_the_open_file_limit() -> None:
    """Running out of descriptors would stop `accept` for health checks too: the cap must fit."""
    script = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (700, 700)); "
              "from llm_firewall.server import FD_RESERVE, connection_cap; "
              "print(connection_cap(4096), connection_cap(100), (700 - FD_RESERVE) // 2)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lowered, kept, fits = map(int, out.stdout.split())
    assert lowered == fits  # two descriptors per connection (client and upstream) plus the reserve
    assert kept == 100


def test_megabyte_bodies_filling_their_lane_do_not_keep_a_long_conversation_out(
        upstream: TestUpstream, tmp_path) -> None:
    """Bodies of megabytes wait for their own inspection thread; a conversation of tens of KB is
    inspected on the other lane, so a client flooding the first cannot refuse everyone else."""
    fw = start_firewall(upstream, tmp_path / "lanes", env={"LLM_FIREWALL_MAX_QUEUED_INSPECTIONS": "2"})
    big = json.dumps({"model": "m", "messages": [
        {"role": "user", "content": "Summarise these meeting notes. " + "The team met and agreed on dates. " * 45_000}]})
    medium = json.dumps({"model": "m", "messages": [
        {"role": "user", "content": "Summarise these meeting notes. " + "The team met and agreed on dates. " * 1_200}]})
    busy = threading.Event()
    stop = threading.Event()

    def flood(n: int) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=60)
            try:
                conn.request("POST", "/v1/chat/completions", body=big,
                             headers={"Content-Type": "application/json", "X-Forwarded-For": f"198.18.7.{n}"})
                if conn.getresponse().status == 503:
                    busy.set()
            finally:
                conn.close()

    threads = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(1, 7)]
    try:
        for t in threads:
            t.start()
        assert busy.wait(WAIT_S)  # the large lane is full: its senders are being refused
        statuses = []
        for n in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=60)
            conn.request("POST", "/v1/chat/completions", body=medium,
                         headers={"Content-Type": "application/json", "X-Forwarded-For": f"198.18.8.{n + 1}"})
            statuses.append(conn.getresponse().status)
            conn.close()
        assert statuses == [200] * 5
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT_S)
        fw.stop()
