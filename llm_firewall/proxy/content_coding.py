"""Content codings (gzip, deflate) decoded with a bound on what they expand to.

Why bounded: a 1 MB gzip body inflates to a gigabyte. Decoded whole, it held the event loop for
seconds and filled memory before any size check ran (request bodies in aiohttp's parser, answers
in the upstream client). Here every decode stops as soon as the output passes its limit.
"""

from __future__ import annotations

import zlib

DECODED = frozenset({"gzip", "x-gzip", "deflate"})
_STEP = 1 << 18  # output produced per decompress call: the loop checks the limit between steps


class CodingError(ValueError):
    """A body in a coding the firewall does not read, or one that does not decode."""


class TooLarge(ValueError):
    """A body whose decoded size passes the limit."""


def decoder_for(coding: str) -> zlib._Decompress | None:
    """A fresh decoder for a Content-Encoding value; None for identity. Raises CodingError for
    any other coding (br, zstd, compress, stacked codings): it would be forwarded unread."""
    name = coding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in DECODED:
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing, told by the header
    raise CodingError(f"content-encoding {coding.strip()[:40]!r} is not supported (use gzip, deflate or none)")


def decode_some(decoder: zlib._Decompress, data: bytes, room: int) -> bytes:
    """Decode `data`, producing at most `room` + 1 bytes (one more than fits tells the caller it
    is too large without inflating the rest)."""
    out: list[bytes] = []
    produced = 0
    while data and produced <= room:
        piece = decoder.decompress(data, min(_STEP, room + 1 - produced))
        out.append(piece)
        produced += len(piece)
        data = decoder.unconsumed_tail
        if not piece and not data:
            break
    return b"".join(out)


def decode_whole(raw: bytes, coding: str, limit: int) -> bytes:
    """The decoded body, or TooLarge once it passes `limit` bytes, or CodingError."""
    decoder = decoder_for(coding)
    if decoder is None:
        if len(raw) > limit:
            raise TooLarge(f"body larger than {limit} bytes")
        return raw
    try:
        body = decode_some(decoder, raw, limit)
        if len(body) <= limit:
            body += decoder.flush()
    except zlib.error as exc:
        raise CodingError(f"the body does not decode as {coding.strip()}: {exc}") from None
    if len(body) > limit:
        raise TooLarge(f"body larger than {limit} bytes once decoded")
    if not decoder.eof:
        raise CodingError(f"the {coding.strip()} body is cut short")
    return body
