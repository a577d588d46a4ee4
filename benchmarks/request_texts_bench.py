"""How long request_texts takes per request, on the shipped chat payload and on an agent-style
request (20 tools, 31 messages), optionally against another version of openai_wire.py.

    python benchmarks/request_texts_bench.py [--against OLD_openai_wire.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import timeit
from pathlib import Path
from types import ModuleType

from llm_firewall.proxy import openai_wire

PAYLOAD = Path(__file__).resolve().parents[1] / "llm_firewall" / "bench_assets" / "payloads" / "request.json"


def agent_body() -> dict:
    tools = [{"type": "function", "function": {
        "name": f"tool_{i}", "description": "Look up items in the catalogue by name.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "the query"},
                                                        "n": {"type": "integer"}}, "required": ["q"]}}}
        for i in range(20)]
    messages = [{"role": "system", "content": "Be brief."}] + [
        {"role": "user" if i % 2 else "assistant", "content": f"Turn {i} about the order."} for i in range(30)]
    return {"model": "m", "messages": messages, "tools": tools, "tool_choice": "auto", "temperature": 0.1}


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_wire", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["other_wire"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def per_call_us(module: ModuleType, body: dict, number: int) -> tuple[float, int]:
    parsed = module.ParsedRequest("chat/completions", body, False, "m")
    seconds = min(timeit.repeat(lambda: module.request_texts(parsed), number=number, repeat=5))
    return seconds / number * 1e6, len(module.request_texts(parsed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", help="another openai_wire.py to time the same way")
    args = ap.parse_args()
    versions = [("this", openai_wire)] + ([("other", load(args.against))] if args.against else [])
    print(f"{'version':8} {'payload':14} {'us/request':>10} {'texts':>6}")
    for name, module in versions:
        for label, body, number in (("chat", json.loads(PAYLOAD.read_text()), 20000), ("agent", agent_body(), 2000)):
            us, count = per_call_us(module, body, number)
            print(f"{name:8} {label:14} {us:10.2f} {count:6d}")


if __name__ == "__main__":
    main()
