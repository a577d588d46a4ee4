"""The native-binding searches give exactly the spans the google-re2 wrapper gives."""

from __future__ import annotations

import re2
import pytest

from llm_firewall.detect.re2raw import found, iter_spans, search_bytes, search_span


@pytest.mark.parametrize("pattern, text", [
    (r"\bsk-[a-z0-9]{4}", "keys: sk-ab12 and sk-cd34, not ask-zz99"),
    (r"[0-9]+", "Überweisung 1234 an Zoë, 56 € und 7"),
    (r"x*", "axxb€x"),  # empty matches step over whole characters
    (r"é+", "café crème brûlée"),
    (r"nothing", "plain text"),
])
def test_spans_equal_the_wrappers_finditer(pattern: str, text: str) -> None:
    regex = re2.compile(pattern)
    expected = [m.span() for m in regex.finditer(text)]
    assert list(iter_spans(regex, text)) == expected
    assert search_span(regex, text) == (expected[0] if expected else None)
    assert found(regex, text) is bool(expected)


def test_search_bytes_gives_byte_offsets_from_a_position() -> None:
    regex = re2.compile(r"ab")
    data = "é ab ab".encode()
    assert search_bytes(regex, data) == (3, 5)
    assert search_bytes(regex, data, 5) == (6, 8)
    assert search_bytes(regex, data, 8) is None
