"""Reading HTTP/1.1 by hand, for tests that must see exactly what crosses a socket."""

from __future__ import annotations

import socket


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the blank line that ends a head: (the head, the bytes read after it).
    The head is whatever arrived if the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
