"""What each inspection stage costs with the CPU caches warm and cold.

Usage: python benchmarks/cold_bench.py [--runs 3000]
In-process, on new text every call: the bench request's user message with a reference no other
call carries (as the bench's real traffic does), and the bench's SSE stream through the
stream guard (every response rule's anchor, as in stream_guard_bench.py). "cold" touches
`bench.EVICT_BYTES` before each call, as other requests' work does in a busy server; a loop
without it keeps everything in the core's own caches. Prints microseconds per call (per event
for the stream), median over the runs.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.*

from benchmarks.bench import EVICT_BYTES, PAYLOADS, cold_runs, evict_caches, timed_once
from llm_firewall.detect.normalize import base_view
from llm_firewall.detect.re2raw import search_span
from llm_firewall.inspector import Inspector
from llm_firewall.proxy.sse import EventSplitter
from llm_firewall.proxy.stream_guard import StreamGuard, _compiled_anchors


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3000, help="calls per stage and cache state")
    args = ap.parse_args(argv)
    inspector = Inspector.load(learned=True)
    engine = inspector.engine
    sets = engine._compiled["request"]
    learned = engine.detectors[0]
    body = orjson.loads((PAYLOADS / "request.json").read_bytes())
    message = body["messages"][-1]["content"]
    numbers = itertools.count()

    def fresh() -> str:  # a text no call has seen: the message plus a new reference
        return f"{message} (ref cold-{next(numbers)})"

    anchor = engine.stream_anchor("response")
    guard_anchor, _ = _compiled_anchors(anchor.pattern)
    events = [e + b"\n\n" for e in (PAYLOADS / "stream.sse").read_bytes().split(b"\n\n") if e.strip()]
    event = events[len(events) // 2]
    window = "ould arrive by Friday.\n- The second charge of"

    def stream(evict: Callable[[], None]) -> float:
        """Seconds per event of one whole stream, `evict()` run (untimed) before each event."""
        guard = StreamGuard(scan=lambda t: engine.scan_text(t, "response", "response", remember=False),
                            anchor=anchor, anchor_width=engine.stream_anchor_width("response"), window=128)
        splitter = EventSplitter()
        spent = 0.0
        for chunk in events:
            evict()
            spent += timed_once(lambda: [guard.feed(e) for e in splitter.feed(chunk)])  # noqa: B023 - called within this iteration
        return (spent + timed_once(guard.finish)) / len(events)

    streams = max(1, args.runs // 50)
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("encode + base_view of the message", lambda: base_view(fresh())),
        ("one RE2 set pass over it", lambda m=sets.groups[0][0]: m(fresh().encode())),
        (f"all {len(sets.groups)} set passes", lambda: sets.hits(fresh().encode())),
        ("rules, every view", lambda: engine._rule_findings(fresh(), "user", "request", "")),
        ("learned detector", lambda: learned.detect(fresh(), "user", "", "request")),
        ("inspect_text (rules, model, scorer)", lambda: inspector.inspect_text(fresh())),
        (f"stream anchor search, {len(window)} chars", lambda: search_span(guard_anchor, window)),
        ("orjson.loads of one SSE event", lambda: orjson.loads(event[6:])),
    ]
    print(f"user message: {len(message)} chars; {args.runs} runs per stage, {streams} streams")
    print(f"{'stage':<44}{'warm us':>10}{'cold us':>10}{'cold/warm':>11}")
    rows = []
    for name, fn in stages:
        fn()
        rows.append((name, statistics.median(timed_once(fn) for _ in range(args.runs)),
                     statistics.median(cold_runs(fn, args.runs))))
    evict = functools.partial(evict_caches, bytearray(EVICT_BYTES))
    rows.append((f"stream guard, per event ({len(events)} events)",
                 statistics.median(stream(lambda: None) for _ in range(streams)),
                 statistics.median(stream(evict) for _ in range(streams))))
    for name, warm, cold in rows:
        print(f"{name:<44}{warm * 1e6:>10.1f}{cold * 1e6:>10.1f}{cold / warm:>10.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
