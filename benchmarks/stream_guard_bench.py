"""Stream guard cost per SSE event against answer length, and the text it keeps.

Usage: python benchmarks/stream_guard_bench.py [--events 50,500,5000,100000] [--window 128]
                                              [--field content|reasoning_content|reasoning+content]
                                              [--parts N --spread choices|tools]
In-process: the firewall's own event splitter and guard (every response rule's anchor, no
policy filter) over a benign answer of one-word chunks, as a model streams it (with
`reasoning+content`, a reasoning model's: the first half in `reasoning_content`, ending with a
blank line, then `content`, so that the guard also keeps the two texts joined). The per-event
cost should not grow with the answer, and the kept text should stay bounded. Inside the server
the same work costs more per event (socket reads and writes in between); `llm-firewall bench
--stream` measures that.

`--parts N` spreads the events over N choices (or, with `--spread tools`, N tool calls of one
choice), round robin, with the guard's cap raised to N: the per-event cost should not grow with
N either (each event re-checks only the text it added to).
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.proxy.sse import EventSplitter
from llm_firewall.proxy.stream_guard import StreamGuard

WORDS = ("the order was shipped on monday and should arrive within three business days "
         "please keep the tracking number").split()


def events(n: int, field: str = "content", parts: int = 1, spread: str = "choices") -> list[bytes]:
    out = []
    for i in range(n):
        if parts > 1:
            part, word = i % parts, " " + WORDS[i % len(WORDS)]
            choice = ({"index": part, "delta": {"content": word}} if spread == "choices" else
                      {"index": 0, "delta": {"tool_calls": [{"index": part, "function": {"arguments": word}}]}})
            out.append(b"data: " + orjson.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                                 "created": 1, "model": "m",
                                                 "choices": [{**choice, "finish_reason": None}]}) + b"\n\n")
            continue
        text = " " + WORDS[i % len(WORDS)] + ("," if i % 7 == 0 else "")
        name = field if "+" not in field else field.split("+")[0 if i < n // 2 else 1]
        if "+" in field and i == n // 2 - 1:
            text += "\n\n"  # the reasoning ends; a last word could grow into a match and is held to the end
        out.append(b"data: " + orjson.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {name: text}, "logprobs": None, "finish_reason": None}]}) + b"\n\n")
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="50,500,5000,100000", help="comma-separated stream lengths")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--field", default="content", help="the delta field the text streams in")
    ap.add_argument("--parts", type=int, default=1, help="choices or tool calls the events are spread over")
    ap.add_argument("--spread", choices=("choices", "tools"), default="choices")
    args = ap.parse_args(argv)
    engine = Engine(load_rules(default_rules_dir()))
    anchor, width = engine.stream_anchor("response"), engine.stream_anchor_width("response")

    def scan(text: str) -> list:
        return engine.scan_text(text, role="response", direction="response", remember=False)

    print(f"{'events':>8}  {'answer chars':>12}  {'us/event':>8}  {'text kept':>9}")
    for n in (int(x) for x in args.events.split(",")):
        raw = events(n, args.field, args.parts, args.spread)
        guard = StreamGuard(scan=scan, window=args.window, anchor=anchor, anchor_width=width,
                            max_parts=max(args.parts, 128))
        splitter = EventSplitter()
        t0 = time.perf_counter()
        for chunk in raw:
            for event in splitter.feed(chunk):
                guard.feed(event)
        guard.finish()
        elapsed = time.perf_counter() - t0
        kept = sum(len(t.text) for t in guard._texts.values()) + len((getattr(guard, "_joint", None) and
                                                                     guard._joint.text) or "")
        print(f"{n:>8}  {guard.assembled_chars:>12,}  {elapsed / n * 1e6:>8.1f}  {kept:>9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
