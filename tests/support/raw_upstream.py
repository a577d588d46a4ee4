"""A raw-socket upstream on 127.0.0.1 that parses what it receives with h11.

h11 is a maintained, strict HTTP/1.1 codec: used here as the oracle for what the firewall
actually wrote on the wire (how many requests, which target, which body), independent of the
firewall's own hand-written client. Every byte is parsed; anything h11 rejects is recorded as
an error instead of being answered.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import h11


@dataclass
class Captured:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class RawUpstream:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "application/json")])
    body: bytes = b'{"ok": true}'
    requests: list[Captured] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        self.status, self.body = 200, b'{"ok": true}'
        self.headers = [("Content-Type", "application/json")]
        self.requests.clear()
        self.errors.clear()

    def start(self) -> RawUpstream:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        current: Captured | None = None
        with sock:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    self.errors.append(f"h11 rejected the request: {exc}")
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    current = Captured(event.method.decode(), event.target.decode("latin-1"),
                                       [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers])
                elif isinstance(event, h11.Data) and current is not None:
                    current.body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage) and current is not None:
                    self.requests.append(current)
                    self._answer(sock, conn, head_only=current.method == "HEAD")
                    current = None
                    if conn.our_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return

    def _answer(self, sock: socket.socket, conn: h11.Connection, *, head_only: bool) -> None:
        headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        out = conn.send(h11.Response(status_code=self.status, headers=headers))
        if not head_only:
            out += conn.send(h11.Data(data=self.body))
        out += conn.send(h11.EndOfMessage())
        try:
            sock.sendall(out)
        except OSError:
            pass
