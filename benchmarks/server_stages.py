"""Where a request's CPU goes inside the running firewall: per-request time of each hot-path stage.

Usage: python benchmarks/server_stages.py [--duration 10] [--connections 16] [--no-inspect] [--stream]
Starts the bench's mock upstream and a firewall (production policy) whose hot-path functions
are wrapped in timers, drives the bench's 1.5 KB chat request at it from many client identities
(wrk or the built-in generator, pinned as in `llm-firewall bench`), then prints each stage's
time per request, per call and calls per request. Stages are timed inclusively (a stage that
calls another includes it) and only synchronous functions are timed, since a coroutine's wall
time includes its waits. Each timer adds ~0.3 µs a call. Inside the server a stage costs two to
four times what it costs in a loop (`cold_bench.py`): other requests' work evicts its code and
data between calls. Stops what it starts.

`--stream [--streams 200]`: streamed answers from the bench's paced mock instead, one at a time
by default (as `llm-firewall bench --stream` measures its per-event goal), with the relay's and
the stream guard's functions timed per upstream event. Stages never called are named at the end.

`server_stages.py serve ...` is the wrapped firewall itself (started by the script, not by hand).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.*

# (module, function or Class.method): synchronous functions on the path of a proxied request
STAGES = [
    ("llm_firewall.middlewares", "new_request_id"),
    ("llm_firewall.middlewares", "_add_security_headers"),
    ("llm_firewall.gateway", "Gateway.identify"),
    ("llm_firewall.enforce.actions", "Enforcer.check_now"),
    ("llm_firewall.proxy.openai_wire", "parse_json_body"),
    ("llm_firewall.proxy.openai_wire", "validate_shape"),
    ("llm_firewall.proxy.openai_wire", "request_texts"),
    ("llm_firewall.proxy.openai_wire", "response_texts"),
    ("llm_firewall.proxy.hardening", "requested_mode"),
    ("llm_firewall.proxy.hardening", "harden"),
    ("llm_firewall.inspector", "Inspector.inspect"),
    ("llm_firewall.gateway", "Gateway._answer_findings"),
    ("llm_firewall.proxy.forward", "upstream_headers"),
    ("llm_firewall.proxy.forward", "downstream_headers"),
    ("llm_firewall.proxy.http1", "Http1Pool._encode"),
    ("llm_firewall.proxy.http1", "_Connection.send"),
    ("llm_firewall.proxy.http1", "_Connection.data_received"),
    ("llm_firewall.usage", "UsageTracker.record"),
    ("aiohttp.web_protocol", "RequestHandler.data_received"),
    ("aiohttp.web_response", "Response.__init__"),
]
REQUESTS_STAGE = "Gateway.identify"  # called once per request
# --stream: the relay's per-event work (the guard's parts are inside StreamGuard.feed)
STREAM_STAGES = [
    ("llm_firewall.gateway", "Gateway.identify"),
    ("llm_firewall.proxy.sse", "EventSplitter.feed"),
    ("llm_firewall.proxy.sse", "Event.json"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard.feed"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard._check_anchored"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard._first_anchor"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard._unfinished_from"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard._scan_region"),
    ("llm_firewall.proxy.stream_guard", "StreamGuard._release"),
    ("llm_firewall.proxy.sse", "encode"),
    ("llm_firewall.proxy.http1", "_Connection.data_received"),
]


def _wrap_stages(spent: dict[str, float], calls: dict[str, int], stages: list[tuple[str, str]]) -> None:
    """Replace each stage by a timing wrapper, wherever a module imported it by name."""
    clock = time.perf_counter
    for module_name, qualname in stages:
        module = importlib.import_module(module_name)
        *owner_path, attr = qualname.split(".")
        owner: Any = module
        for part in owner_path:
            owner = getattr(owner, part)
        original: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, __fn: Callable[..., Any] = original, __name: str = qualname, **kwargs: Any) -> Any:
            start = clock()
            try:
                return __fn(*args, **kwargs)
            finally:
                spent[__name] += clock() - start
                calls[__name] += 1

        setattr(owner, attr, timed)
        if not owner_path:  # a module function: also where it was imported by name
            for other in list(sys.modules.values()):
                if getattr(other, "__name__", "").startswith(("llm_firewall", "aiohttp")) \
                        and getattr(other, attr, None) is original:
                    setattr(other, attr, timed)


def serve(argv: list[str]) -> int:
    """The firewall CLI with the stages timed; SIGUSR1 writes the table to $STAGES_OUT and exits."""
    import llm_firewall.app
    import llm_firewall.gateway  # noqa: F401
    from llm_firewall.tools.cli import main

    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    _wrap_stages(spent, calls, STREAM_STAGES if os.environ.get("STAGES_STREAM") == "1" else STAGES)

    def report(*_: Any) -> None:
        requests = calls.get(REQUESTS_STAGE, 0)
        lines = [f"{requests}"]
        for name in sorted(spent, key=spent.__getitem__, reverse=True):
            lines.append(f"{name}\t{spent[name]}\t{calls[name]}")
        Path(os.environ["STAGES_OUT"]).write_text("\n".join(lines) + "\n")
        os._exit(0)

    signal.signal(signal.SIGUSR1, report)
    return main(argv)


def drive(args: argparse.Namespace) -> int:
    from benchmarks.bench import (
        PAYLOADS,
        SSE_DELAY_MS,
        Load,
        Processes,
        Stack,
        pinning_available,
        sse_probe,
        start_firewall,
    )
    from benchmarks.traffic import fixed_bodies, write_bodies

    pin = pinning_available()
    workdir = Path(tempfile.mkdtemp(prefix="llm-firewall-stages-"))
    procs = Processes(workdir, pin)
    out = workdir / "stages.txt"
    try:
        stack = Stack(procs, "production", ["direct"],
                      mock_env={"MOCK_SSE_DELAY_MS": str(SSE_DELAY_MS)} if args.stream else {})
        stack.up()
        port, pid = start_firewall(procs, "firewall", stack.ports["direct"], "production", inspect=not args.no_inspect,
                                   entry=(sys.executable, str(Path(__file__).resolve())), STAGES_OUT=str(out),
                                   STAGES_STREAM="1" if args.stream else "0")
        load = Load(shutil.which("wrk") is not None, pin, workdir)
        url = f"http://127.0.0.1:{port}"
        if args.stream:
            body = PAYLOADS / "request_stream.json"
            sse_probe(load, url, body, 5)  # warm-up
            streams = sse_probe(load, url, body, args.streams, args.connections)
            result = {"requests": len(streams),
                      "events": sum(len(s["events"]) for s in streams if s["status"] == 200)}
        else:
            body = write_bodies(workdir / "fixed.jsonl", fixed_bodies((PAYLOADS / "request.json").read_bytes()))
            load.run(url, args.connections, 1.0, body)  # warm-up
            result = load.run(url, args.connections, args.duration, body)
        os.kill(pid, signal.SIGUSR1)
        procs.procs["firewall"].wait(timeout=30)
        head, *rows = out.read_text().splitlines()
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    requests = int(head) or 1
    unit, per = "request", requests
    if args.stream:  # per upstream event: the mock's stream has a fixed number of them
        events = sum(1 for e in (PAYLOADS / "stream.sse").read_bytes().split(b"\n\n") if e.strip())
        unit, per = "event", requests * events
        print(f"{result['requests']} streams ({events} upstream events each, paced {SSE_DELAY_MS:g} ms), "
              f"{args.connections} at a time (inspection {'off' if args.no_inspect else 'on'}); "
              f"{requests} seen by the firewall, warm-up included")
    else:
        print(f"{result['requests']} requests at concurrency {args.connections} over {args.duration:g} s "
              f"(inspection {'off' if args.no_inspect else 'on'}); {requests} seen by the firewall, warm-up included")
    print(f"{'stage':<36} {'us/' + unit:>10} {'us/call':>8} {'calls/' + unit:>13}")
    for row in rows:
        name, seconds, calls = row.split("\t")
        print(f"{name:<36} {float(seconds) / per * 1e6:>10.2f} {float(seconds) / int(calls) * 1e6:>8.2f} "
              f"{int(calls) / per:>13.2f}")
    seen = {row.split("\t")[0] for row in rows}
    missed = [name for _, name in (STREAM_STAGES if args.stream else STAGES) if name not in seen]
    if missed:
        print("not reached: " + ", ".join(missed))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--no-inspect", action="store_true", help="switch inspection off (admin API)")
    ap.add_argument("--stream", action="store_true",
                    help="streamed answers instead (the bench's paced mock); figures per upstream event")
    ap.add_argument("--streams", type=int, default=200, help="--stream: how many streams (default 200)")
    args = ap.parse_args(argv)
    if args.stream and "--connections" not in argv:
        args.connections = 1  # one stream at a time, as the bench's per-event goal is measured
    return drive(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
