"""`llm-firewall bench`: what the firewall costs, measured side by side with a minimal proxy.

One run starts, on 127.0.0.1 and free ports, the reference baseline's fast mock upstream, its
minimal pass-through aiohttp proxy (the floor any aiohttp proxy pays), the firewall, and a second
firewall with inspection switched off through the admin API ("fw, inspection off": proxying,
identity, rate limits and accounting only), then drives the same load at each of them from a
separate process, so every figure is a ratio taken on the same machine at the same moment:
absolute numbers do not carry over between machines, ratios do. The firewall's CPU less the
uninspecting one's is what inspection costs, per request and per SSE event.

    llm-firewall bench [--concurrency 1,16,64] [--duration 5] [--rounds 3] [--policy production]
                       [--texts FILE.jsonl] [--traffic real,fixed] [--stream] [--scan]
                       [--identities N] [--json] [--quick]

Two kinds of traffic, each sent to every target (traffic.py writes them as files of bodies):
"real": the payload's system prompt, fixed, and as the user turn a text of a labelled JSONL
(--texts; examples/sample.jsonl by default), a different one every request, each ending in a
reference no other request carries, so no verdict can come from a cache: what every chat
request costs. "fixed": the payload itself every request, the figure a verdict cache serves.
Every request comes from a client identity of its own (address, key, user, session), so a
refusal never turns into sanctions that make later requests cheap. Refusals (4xx: the real
texts labelled attacks, mostly) are counted apart from errors: a refused request takes another
path than a forwarded one (no upstream call, but an alert and an audit record) and costs the
firewall differently, so the report says how many there were. --labels keeps only the texts
with the given labels (--labels benign: forwarded traffic only).

Throughput rows: requests/s, p50/p99 latency, p50 added over the mock called directly with the
same traffic, the firewall's throughput as a share of the baseline's on the same traffic,
refusals, errors, CPU time per request and peak RSS of the process under test. The targets take
turns over --rounds rounds (3 by default) and every figure is the median.

--stream: time to first token and per-event cost through each proxy, against a mock that paces
its SSE events: first with one stream at a time (every event wakes an idle process: the dearest
case), then with 16 at once (CPU per event only). --scan: rules-engine MB/s on 1.5 KB prompts and
the time for a 1 MiB prompt, in-process. --identities N: RSS growth of a fresh firewall while
every request comes from one of N distinct identities and carries a new text (run it with
--duration 60; with --traffic fixed, the fixed body instead).

When `taskset` exists, the mock and the load generator share CPU 0 and the proxy under test gets
CPU 1, as the baseline's README prescribes. The load generator is `wrk` with assets/traffic.lua
when installed, else the built-in asyncio one in assets/loadgen.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.traffic import DEFAULT_TEXTS, Texts, fixed_bodies, read_texts, real_bodies, write_bodies

ASSETS = Path(__file__).resolve().parent / "assets"
PAYLOADS = ASSETS / "payloads"
TARGETS = ("direct", "baseline", "firewall", "uninspected")
LABELS = {"direct": "direct", "baseline": "baseline proxy", "firewall": "firewall",
          "uninspected": "fw, inspection off"}
REAL, FIXED = "real", "fixed"  # the two kinds of traffic: a new user text every request, or one body for all
VARIANTS = (REAL, FIXED)
MOCK_CPU, PROXY_CPU = 0, 1
SSE_DELAY_MS = 2.0
ROUNDS = 5  # --stream: targets alternate in this many rounds
STREAMS_AT_ONCE = 16  # --stream: the second measurement, many streams in flight as on a busy server
GOALS = {"share": 0.75, "real_share": 0.60, "added_p50_ms": 0.4, "event_us": 10.0, "ttft_ms": 1.0,
         "scan_mb_s": 100.0, "mib_ms": 100.0, "rss_growth_mib": 20.0}


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinning_available() -> bool:
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return False
    return shutil.which("taskset") is not None and {MOCK_CPU, PROXY_CPU} <= cpus


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] + cmd if cpu is not None else cmd


def child_env(**extra: str) -> dict[str, str]:
    """The environment for every child: no real upstream credentials or base URL leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(extra)
    return env


@dataclass
class Processes:
    """Every child this run starts, so a finally block can stop them all."""

    workdir: Path
    pin: bool
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], cpu: int, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(pinned(cmd, cpu if self.pin else None), env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def wait_ready(check: Callable[[], bool], proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if check():
            return True
        time.sleep(0.1)
    return False


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    return check


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False
    return check


# --------------------------------------------------------------------------- /proc readings

def descendants(pid: int) -> list[int]:
    """pid and every process below it (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of pid and its descendants, every thread included.

    From each thread's /proc/PID/task/TID/schedstat (nanoseconds the scheduler ran it), not from
    utime/stime in /proc/PID/stat: those are charged a whole clock tick to whoever runs at the
    tick, so a proxy that runs 100 us every 2 ms (a paced stream) was measured to within ±15 %
    only. Falls back to stat where schedstat is missing.
    """
    total = 0.0
    for p in descendants(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
            total += sum(_thread_ns(p, tid) for tid in tids) / 1e9
        except (OSError, IndexError, ValueError):
            total += _stat_seconds(p)
    return total


def _thread_ns(pid: int, tid: str) -> int:
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[0])
    except FileNotFoundError:  # the thread ended between the listing and the read
        return 0


def _stat_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15 of stat(5)
    except (OSError, IndexError, ValueError):
        return 0.0


def vm_kib(pid: int, key: str) -> int:
    """A /proc/PID/status figure such as VmRSS or VmHWM, in KiB (0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# --------------------------------------------------------------------------- load generation

@dataclass
class Load:
    """How load is driven: wrk with assets/traffic.lua when installed, else the built-in generator.

    Every run gets a number of its own (1, 2, ...): its texts' references and its clients'
    identities carry it, so no text or identity recurs between runs against the same server."""

    use_wrk: bool
    pin: bool
    workdir: Path
    runs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def command(self, url: str, connections: int, duration: float, bodies: Path, run: int,
                identities: int = 0) -> tuple[list[str], dict]:
        """bodies: a file written by traffic.write_bodies; identities: cycle over N (0: one each)."""
        if self.use_wrk:
            cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                   "-s", str(ASSETS / "traffic.lua"), url]
            env = child_env(BODIES_FILE=str(bodies), RUN=str(run), IDENTITIES=str(identities), THREADS="1")
        else:
            cmd = [sys.executable, str(ASSETS / "loadgen.py"), "load", url, "--bodies", str(bodies),
                   "--connections", str(connections), "--duration", str(duration), "--run", str(run),
                   "--identities", str(identities)]
            env = child_env()
        return pinned(cmd, MOCK_CPU if self.pin else None), env

    def start(self, url: str, connections: int, duration: float, bodies: Path, identities: int = 0) -> subprocess.Popen:
        cmd, env = self.command(url, connections, duration, bodies, next(self.runs), identities)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, process_group=0)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=5)
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("WRKJSON "):
                return json.loads(line[len("WRKJSON "):])
        raise RuntimeError(f"load generator printed no result: {err.decode(errors='replace')[-500:]}")

    def run(self, url: str, connections: int, duration: float, bodies: Path, identities: int = 0) -> dict[str, Any]:
        return self.finish(self.start(url, connections, duration, bodies, identities), duration + 60)


def answers(raw: dict[str, Any]) -> dict[str, Any]:
    """A load run's answers: refusals (4xx, which take another path than a forwarded request)
    apart from errors (no answer, or any other status than 2xx and 4xx)."""
    status = {int(code): n for code, n in raw.get("status", {}).items()}
    refused = sum(n for code, n in status.items() if 400 <= code < 500)
    errors = sum(v for k, v in raw.items() if k.startswith("err_"))
    errors += sum(n for code, n in status.items() if not (200 <= code < 300 or 400 <= code < 500))
    detail = {k[4:]: v for k, v in raw.items() if k.startswith("err_") and v}
    detail.update({str(code): n for code, n in status.items() if not (200 <= code < 300 or 400 <= code < 500)})
    return {"refused": refused, "refused_by_status": {str(c): n for c, n in sorted(status.items()) if 400 <= c < 500},
            "errors": errors, "error_detail": detail}


def measure(load: Load, url: str, pid: int, connections: int, duration: float, bodies: Path) -> dict[str, Any]:
    """One load run against url, with the CPU and memory of the process serving it."""
    cpu0 = cpu_seconds(pid)
    raw = load.run(url, connections, duration, bodies)
    cpu = cpu_seconds(pid) - cpu0
    requests = raw["requests"]
    seconds = raw["duration_us"] / 1e6 or 1.0
    return {"concurrency": connections, "requests": requests, "rps": requests / seconds,
            "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000, **answers(raw),
            "cpu_us_per_req": cpu / requests * 1e6 if requests else None,
            "peak_rss_mib": vm_kib(pid, "VmHWM") / 1024}


# --------------------------------------------------------------------------- the stack under test

@dataclass
class Stack:
    """A mock upstream, the baseline proxy in front of it and the firewall in front of it."""

    procs: Processes
    policy: str
    targets: Sequence[str]
    mock_env: dict[str, str] = field(default_factory=dict)
    suffix: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    preflight: dict[str, dict[str, Any]] = field(default_factory=dict)

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.ports[target]}"

    def up(self) -> None:
        python = sys.executable
        port, self.pids["direct"] = start_mock(self.procs, "mock" + self.suffix, **self.mock_env)
        self.ports["direct"] = port
        if "baseline" in self.targets:
            self.ports["baseline"] = bport = free_port()
            base = self.procs.start("baseline" + self.suffix,
                                    [python, str(ASSETS / "mini_proxy.py"), str(bport), f"http://127.0.0.1:{port}"],
                                    PROXY_CPU, child_env(PROXY_UVLOOP=_uvloop_flag()))
            self._await("baseline" + self.suffix, base, port_open(bport), 30)
            self.pids["baseline"] = base.pid
        if "firewall" in self.targets:
            self.ports["firewall"], self.pids["firewall"] = start_firewall(self.procs, "firewall" + self.suffix,
                                                                          port, self.policy)
        if "uninspected" in self.targets:
            self.ports["uninspected"], self.pids["uninspected"] = start_firewall(
                self.procs, "uninspected" + self.suffix, port, self.policy, inspect=False)

    def _await(self, name: str, proc: subprocess.Popen, check: Callable[[], bool], timeout: float) -> None:
        if not wait_ready(check, proc, timeout):
            raise RuntimeError(f"{name} did not start within {timeout:.0f} s:\n{self.procs.log_tail(name)}")


def _uvloop_flag() -> str:
    """The firewall runs on uvloop when it is installed; give the baseline the same advantage."""
    try:
        import uvloop  # noqa: F401
        return "1"
    except ImportError:
        return "0"


def start_mock(procs: Processes, name: str, **env: str) -> tuple[int, int]:
    """The fast mock upstream on a free port, `env` added; (port, pid) once it listens."""
    port = free_port()
    mock = procs.start(name, [sys.executable, str(ASSETS / "mock_upstream.py"), str(port)], MOCK_CPU,
                       child_env(MOCK_UVLOOP=_uvloop_flag(), **env))
    if not wait_ready(port_open(port), mock, 30):
        raise RuntimeError(f"{name} did not start within 30 s:\n{procs.log_tail(name)}")
    return port, mock.pid


def start_firewall(procs: Processes, name: str, mock_port: int | None, policy: str, inspect: bool = True,
                   entry: Sequence[str] = (sys.executable, "-m", "llm_firewall"), **env: str) -> tuple[int, int]:
    """A firewall in front of the mock (None: its embedded demo model), with `env` added to its
    environment. With inspect=False its inspection is switched off through the admin API (as an
    operator would), so that the difference to an inspecting firewall is what inspection itself
    costs, apart from the proxying, identity and rate-limit work. `entry` is the command that
    takes `serve` and its options (a script wrapping the CLI, say)."""
    port = free_port()
    data_dir = procs.workdir / f"{name}-data"
    data_dir.mkdir()
    upstream = [] if mock_port is None else ["--upstream", f"http://127.0.0.1:{mock_port}/v1"]
    cmd = [*entry, "serve", "--host", "127.0.0.1", "--port", str(port),
           *upstream, "--policy", policy, "--data-dir", str(data_dir)]
    token = secrets.token_urlsafe(24)
    proc = procs.start(name, cmd, PROXY_CPU, child_env(LLM_FIREWALL_TRUSTED_PROXIES="127.0.0.1/32",
                                                       LLM_FIREWALL_ADMIN_TOKEN=token, **env))
    if not wait_ready(http_ok(f"http://127.0.0.1:{port}/healthz"), proc, 90):
        raise RuntimeError(f"the firewall did not become healthy:\n{procs.log_tail(name)}")
    if not inspect:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/soc/toggle", data=b'{"enabled": false}',
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            if json.loads(resp.read()).get("soc_enabled") is not False:
                raise RuntimeError(f"{name}: inspection could not be switched off")
    return port, proc.pid


# --------------------------------------------------------------------------- phases

def preflight(url: str, body: Path | bytes) -> dict[str, Any]:
    """One request with the benchmark payload: a refusal would make every timed request an error."""
    data = body if isinstance(body, bytes) else body.read_bytes()
    req = urllib.request.Request(url + "/v1/chat/completions", data=data, method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Bearer sk-bench-7f3a9c2e41d84b6aa0e5f1c2d3b4a596",
        "X-Forwarded-For": "198.51.100.7", "X-User-ID": "bench-preflight", "X-Session-ID": "bench-preflight"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return {"status": resp.status}
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            pass
        return {"status": exc.code, "detail": detail}
    except OSError as exc:
        return {"status": 0, "detail": str(exc)}


def throughput_phase(stack: Stack, load: Load, concurrencies: Sequence[int], duration: float,
                     warmup: float, bodies: dict[str, Path], rounds: int = 1) -> list[dict[str, Any]]:
    """Every target with every kind of traffic at each concurrency, the targets taking turns.

    `bodies` maps each kind of traffic (REAL, FIXED) to its bodies file. The rounds repeat the
    whole sequence, so slow drift of a noisy machine hits all targets alike; every figure is the
    median over the rounds, and shares and added latencies are taken within each round (against
    the baseline and the mock measured seconds before) before their median.
    """
    if FIXED in bodies:
        stack.preflight = {t: preflight(stack.url(t), bodies[FIXED].read_bytes().rstrip(b"\n"))
                           for t in stack.targets}
    for target in stack.targets:
        for path in bodies.values():
            load.run(stack.url(target), 16, warmup, path)
    per_round = []
    for _ in range(rounds):
        rows = []
        for c in concurrencies:
            for variant, path in bodies.items():
                for target in stack.targets:
                    row = measure(load, stack.url(target), stack.pids[target], c, duration, path)
                    rows.append({"target": target, "variant": variant, **row})
        add_comparisons(rows)
        per_round.append(rows)
    return median_rows(per_round)


def median_rows(per_round: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per target run: the median of each figure over the rounds (whose rows come in the
    same order); counts are summed, peak RSS is the highest."""
    out = []
    for same in zip(*per_round, strict=False):
        row = dict(same[0], rounds=len(same))
        for key, value in same[0].items():
            values = [r[key] for r in same if r.get(key) is not None]
            if key in ("requests", "errors", "refused"):
                row[key] = sum(values)
            elif key == "peak_rss_mib":
                row[key] = max(values)
            elif isinstance(value, dict):  # counts by kind: error_detail, refused_by_status
                merged: dict[str, int] = {}
                for r in same:
                    for kind, n in r[key].items():
                        merged[kind] = merged.get(kind, 0) + n
                row[key] = merged
            elif key != "concurrency" and values and isinstance(value, float):
                row[key] = statistics.median(values)
        out.append(row)
    return out


def add_comparisons(rows: list[dict[str, Any]]) -> None:
    """Added p50 versus direct and throughput share of the baseline, per traffic and concurrency:
    each row against the mock and the minimal proxy driven with the same bodies."""
    by = {(r["target"], r["variant"], r["concurrency"]): r for r in rows}
    for r in rows:
        direct = by.get(("direct", r["variant"], r["concurrency"]))
        base = by.get(("baseline", r["variant"], r["concurrency"]))
        r["added_p50_ms"] = r["p50_ms"] - direct["p50_ms"] if direct and r["target"] != "direct" else None
        r["share_of_baseline"] = (r["rps"] / base["rps"]
                                  if base and base["rps"] and r["target"] in ("firewall", "uninspected") else None)


def stream_phase(procs: Processes, load: Load, policy: str, targets: Sequence[str], requests: int,
                 body: Path) -> dict[str, Any]:
    """TTFT and per-event cost through each proxy, against a mock pacing its SSE events; then the
    per-event cost again with STREAMS_AT_ONCE streams in flight."""
    stack = Stack(procs, policy, targets, mock_env={"MOCK_SSE_DELAY_MS": str(SSE_DELAY_MS)}, suffix="-sse")
    stack.up()
    results: dict[str, Any] = {"sse_delay_ms": SSE_DELAY_MS, "requests": requests, "targets": {}}
    results["preflight"] = {t: preflight(stack.url(t), body) for t in targets}
    for target in targets:
        sse_probe(load, stack.url(target), body, 2)  # warm-up
    rounds = max(1, min(ROUNDS, requests // 5))
    runs, cpu = alternate_streams(stack, load, targets, body,
                                  [(requests // rounds + (i < requests % rounds), 1) for i in range(rounds)])
    marks, upstream_events = text_marks(runs[targets[0]])  # targets[0] is direct: the mock itself
    for target in targets:
        results["targets"][target] = summarise_stream(runs[target], cpu[target], marks, upstream_events)
    add_stream_comparisons(results["targets"])
    # Many streams at once: events of different streams share the process's wake-ups and caches,
    # as on a busy server.
    at_once = min(STREAMS_AT_ONCE, requests)
    runs, cpu = alternate_streams(stack, load, targets, body, [(2 * at_once, at_once)] * 2)
    results["at_once"] = {"connections": at_once, "streams": len(runs[targets[0]]), "targets": {
        target: summarise_stream(runs[target], cpu[target], marks, upstream_events) for target in targets}}
    add_stream_comparisons(results["at_once"]["targets"])
    for name in [n for n in procs.procs if n.endswith("-sse")]:
        procs.stop(name)
    return results


def alternate_streams(stack: Stack, load: Load, targets: Sequence[str], body: Path,
                      rounds: Sequence[tuple[int, int]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Each round, each target in turn gets (streams, how many at once); returns every target's
    streams and the CPU its process spent on them. Targets take turns a few streams at a time, so
    that a burst of load from elsewhere on a shared machine lands on all of them rather than on
    whichever ran then."""
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    cpu = {t: 0.0 for t in targets}
    for streams, at_once in rounds:
        for target in targets:
            cpu0 = cpu_seconds(stack.pids[target])
            runs[target] += sse_probe(load, stack.url(target), body, streams, at_once)
            cpu[target] += cpu_seconds(stack.pids[target]) - cpu0
    return runs, cpu


def sse_probe(load: Load, url: str, body: Path, requests: int, connections: int = 1) -> list[dict[str, Any]]:
    cmd = pinned([sys.executable, str(ASSETS / "loadgen.py"), "sse", url, "--body", str(body),
                  "--requests", str(requests), "--connections", str(connections)], MOCK_CPU if load.pin else None)
    out = subprocess.run(cmd, env=child_env(), capture_output=True, timeout=60 + 10 * requests, check=False)
    for line in out.stdout.decode(errors="replace").splitlines():
        if line.startswith("SSEJSON "):
            return json.loads(line[len("SSEJSON "):])["requests"]
    raise RuntimeError(f"stream probe printed no result: {out.stderr.decode(errors='replace')[-500:]}")


def text_marks(runs: list[dict[str, Any]]) -> tuple[list[int], int]:
    """The upstream's pacing, from the first good stream straight from the mock: cumulative text
    length after each event that carries text, and how many events it sent in all."""
    ok = next((r for r in runs if r["status"] == 200 and r["events"]), None)
    marks, total = [], 0
    for _, chars in ok["events"] if ok else ():
        total += chars
        if chars:
            marks.append(total)
    return marks, len(ok["events"]) if ok else 0


def summarise_stream(runs: list[dict[str, Any]], cpu: float, marks: list[int],
                     upstream_events: int) -> dict[str, Any]:
    """TTFT, when each upstream event's text was complete at the client, and CPU per upstream event.

    A proxy may re-frame a stream (the firewall sends the checked start of a chunk at once and
    the rest with the next), so arrivals are compared by text position and CPU is divided by
    the upstream's event count, not by the events the client received.
    """
    ok = [r for r in runs if r["status"] == 200 and r["events"]]
    ttft = [next((t for t, chars in r["events"] if chars), r["events"][-1][0]) for r in ok]
    events = sum(len(r["events"]) for r in ok)

    def reached(run: dict[str, Any], mark: int) -> float | None:
        total = 0
        for t, chars in run["events"]:
            total += chars
            if total >= mark:
                return float(t)
        return None

    arrival = []
    for mark in marks:
        times = [t for t in (reached(r, mark) for r in ok) if t is not None]
        arrival.append(statistics.median(times) * 1000 if times else None)
    return {"ok": len(ok), "errors": len(runs) - len(ok), "events_per_stream": events / len(ok) if ok else 0,
            "ttft_ms": statistics.median(ttft) * 1000 if ttft else None,
            "arrival_ms": arrival,
            "cpu_us_per_event": cpu / (len(ok) * upstream_events) * 1e6 if ok and upstream_events else None}


def add_stream_comparisons(targets: dict[str, dict[str, Any]]) -> None:
    """Versus the baseline: TTFT difference, median text delay, extra CPU per upstream event; and
    for the firewall, what inspection costs per upstream event (its CPU less that of the same
    firewall with inspection off)."""
    fw, off = targets.get("firewall"), targets.get("uninspected")
    if fw is not None and off is not None and fw["cpu_us_per_event"] is not None and off["cpu_us_per_event"] is not None:  # noqa: E501
        fw["inspection_us_per_event"] = fw["cpu_us_per_event"] - off["cpu_us_per_event"]
    base = targets.get("baseline")
    for name, t in targets.items():
        if base is None or name in ("baseline", "direct"):
            continue
        t["ttft_added_ms"] = (t["ttft_ms"] - base["ttft_ms"]
                              if t["ttft_ms"] is not None and base["ttft_ms"] is not None else None)
        gaps = [a - b for a, b in zip(t["arrival_ms"], base["arrival_ms"], strict=False) if a is not None and b is not None]  # noqa: E501
        t["event_delay_ms"] = statistics.median(gaps) if gaps else None
        t["event_cpu_added_us"] = (t["cpu_us_per_event"] - base["cpu_us_per_event"]
                                   if t["cpu_us_per_event"] is not None and base["cpu_us_per_event"] is not None
                                   else None)


def scan_phase(quick: bool) -> dict[str, Any]:
    """Rules-engine speed in this process: the same Inspector the proxy uses."""
    from llm_firewall.inspector import Inspector

    prompt = benchmark_prompt(1536)
    big = benchmark_prompt(1 << 20)
    results: dict[str, Any] = {"prompt_bytes": len(prompt.encode()), "big_bytes": len(big.encode())}
    for label, learned in (("full", True), ("rules_only", False)):
        t0 = time.perf_counter()
        inspector = Inspector.load(learned=learned)
        load_s = time.perf_counter() - t0
        inspector.inspect_text(prompt)
        warm_runs = timed_loop(lambda: inspector.inspect_text(prompt), 0.5 if quick else 3.0)  # noqa: B023 - called within this iteration
        per_prompt = statistics.median(warm_runs)
        cold = statistics.median(cold_runs(lambda: inspector.inspect_text(prompt), 100 if quick else 1000))  # noqa: B023 - called within this iteration
        big_runs = [timed_once(lambda: inspector.inspect_text(big)) for _ in range(1 if quick else 3)]  # noqa: B023 - called within this iteration
        results[label] = {"load_s": load_s, "prompt_p50_us": per_prompt * 1e6,
                          "prompts": len(warm_runs),
                          "mb_s": results["prompt_bytes"] / per_prompt / 1e6,
                          "cold_p50_us": cold * 1e6,
                          "cold_mb_s": results["prompt_bytes"] / cold / 1e6,
                          "big_ms": statistics.median(big_runs) * 1000}
    return results


# Bytes touched before each cold run: several times a core's L2 cache (1-2 MiB on common server
# CPUs). A prompt timed in a loop finds the rules' DFA states, the model's tables and the
# interpreter's code in L1/L2; in the server, other requests' work has pushed them out in
# between, and the same prompt costs two to three times as much. The cold figure shows that.
EVICT_BYTES = 16 << 20


def evict_caches(other: bytearray) -> None:
    """Refill the CPU caches below the last level with `other` (EVICT_BYTES long)."""
    other[::64] = other[::64]  # a read and a write of every cache line


def cold_runs(fn: Callable[[], Any], runs: int) -> list[float]:
    """Times of `fn()`, each with the caches below the last level refilled by other data first."""
    other = bytearray(EVICT_BYTES)
    times = []
    for _ in range(runs):
        evict_caches(other)
        times.append(timed_once(fn))
    return times


def benchmark_prompt(size: int) -> str:
    """Ordinary text of `size` bytes built from the baseline's request payload."""
    doc = json.loads((PAYLOADS / "request.json").read_bytes())
    text = "\n".join(m["content"] for m in doc["messages"] if isinstance(m.get("content"), str))
    out = (text + "\n") * (size // (len(text) + 1) + 1)
    return out.encode()[:size].decode("ascii", errors="ignore")


def timed_loop(fn: Callable[[], Any], seconds: float, max_runs: int = 200_000) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(times) < max_runs:
        times.append(timed_once(fn))
    return times


def timed_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory_phase(procs: Processes, load: Load, policy: str, identities: int, connections: int,
                 duration: float, bodies: Path, fixed: bytes) -> dict[str, Any]:
    """RSS of a fresh firewall while requests come from `identities` distinct identities, each
    request with a text never sent before (the real-traffic bodies); `fixed` is the preflight body."""
    mock_port, _ = start_mock(procs, "mock-mem")
    port, pid = start_firewall(procs, "firewall-mem", mock_port, policy)
    url = f"http://127.0.0.1:{port}"
    check = preflight(url, fixed)
    load.run(url, connections, 2.0, bodies)  # warm-up: caches, arenas, lazy imports
    rss0 = vm_kib(pid, "VmRSS")
    samples = [(0.0, rss0)]
    t0 = time.monotonic()
    gen = load.start(url, connections, duration, bodies, identities)
    while gen.poll() is None and time.monotonic() - t0 < duration + 60:
        time.sleep(min(1.0, duration / 20))
        samples.append((time.monotonic() - t0, vm_kib(pid, "VmRSS")))
    raw = Load.finish(gen, 30)
    rss1 = vm_kib(pid, "VmRSS")
    procs.stop("firewall-mem")
    procs.stop("mock-mem")
    requests = raw["requests"]
    return {"preflight": {"firewall": check}, "identities": identities, "distinct_identities_sent": min(requests, identities),  # noqa: E501
            "requests": requests, "rps": requests / (raw["duration_us"] / 1e6 or 1), **answers(raw),
            "rss_start_mib": rss0 / 1024, "rss_end_mib": rss1 / 1024,
            "rss_max_mib": max(s[1] for s in samples) / 1024, "rss_growth_mib": (rss1 - rss0) / 1024,
            "samples": [(round(t, 1), round(k / 1024, 1)) for t, k in samples[:: max(1, len(samples) // 12)]]}


# --------------------------------------------------------------------------- report

def fmt(value: Any, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def throughput_table(rows: list[dict[str, Any]]) -> Iterator[str]:
    head = (f"{'target':<20}{'traffic':>8}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}"
            f"{'% base':>8}{'refused':>9}{'errors':>8}{'CPU us/req':>12}{'peak RSS MiB':>14}")
    yield head
    yield "-" * len(head)
    for r in rows:
        share = None if r["share_of_baseline"] is None else r["share_of_baseline"] * 100
        refused = f"{100 * r['refused'] / r['requests']:.0f}%" if r["requests"] else "-"
        yield (f"{LABELS[r['target']]:<20}{r['variant']:>8}{r['concurrency']:>5}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}"
               f"{r['p99_ms']:>9.2f}{fmt(r['added_p50_ms'], '+.2f'):>9}{fmt(share, '.0f'):>8}{refused:>9}"
               f"{r['errors']:>8}{fmt(r['cpu_us_per_req'], '.0f'):>12}{r['peak_rss_mib']:>14.1f}")


def stream_table(stream: dict[str, Any]) -> Iterator[str]:
    yield (f"Streaming ({stream['requests']} sequential streams per target, mock paces events every "
           f"{stream['sse_delay_ms']:g} ms):")
    head = (f"{'target':<20}{'streams':>8}{'events':>8}{'TTFT ms':>9}{'+TTFT ms':>10}{'event delay ms':>16}"
            f"{'CPU us/event':>14}{'+CPU us/event':>15}")
    yield head
    yield "-" * len(head)
    for name, t in stream["targets"].items():
        yield (f"{LABELS[name]:<20}{t['ok']:>8}{t['events_per_stream']:>8.0f}{fmt(t['ttft_ms'], '.2f'):>9}"
               f"{fmt(t.get('ttft_added_ms'), '+.2f'):>10}{fmt(t.get('event_delay_ms'), '+.3f'):>16}"
               f"{fmt(t['cpu_us_per_event'], '.1f'):>14}{fmt(t.get('event_cpu_added_us'), '+.1f'):>15}")
    yield ("(+ columns are versus the baseline proxy; events = events the client received; event delay = median "
           "over the upstream's events of when their text was complete at the client; CPU per upstream event)")
    at_once = stream.get("at_once")
    if at_once:
        yield ""
        yield f"Streaming, {at_once['connections']} streams at once ({at_once['streams']} per target):"
        head = f"{'target':<20}{'streams':>8}{'CPU us/event':>14}{'+CPU us/event':>15}"
        yield head
        yield "-" * len(head)
        for name, t in at_once["targets"].items():
            yield (f"{LABELS[name]:<20}{t['ok']:>8}{fmt(t['cpu_us_per_event'], '.1f'):>14}"
                   f"{fmt(t.get('event_cpu_added_us'), '+.1f'):>15}")


def scan_lines(scan: dict[str, Any]) -> Iterator[str]:
    yield f"Scanning (in-process Inspector.inspect_text; {scan['prompt_bytes']} B prompt, {scan['big_bytes']} B prompt):"  # noqa: E501
    for label, text in (("full", "rules + learned detector + scorer"), ("rules_only", "rules only (no learned detector)")):  # noqa: E501
        s = scan[label]
        yield (f"  {text:<36} {s['mb_s']:>8.2f} MB/s  ({s['prompt_p50_us']:.0f} us p50 per 1.5 KB prompt, "
               f"{s['prompts']} runs)   1 MiB prompt: {s['big_ms']:.0f} ms")
        yield (f"  {'  caches cold before each prompt':<36} {s['cold_mb_s']:>8.2f} MB/s  "
               f"({s['cold_p50_us']:.0f} us p50; what a request pays in a busy server)")


def memory_lines(mem: dict[str, Any]) -> Iterator[str]:
    yield (f"Memory: {mem['requests']} requests ({mem['rps']:.0f}/s, {mem['refused']} refused, {mem['errors']} "
           f"errors), {'each with a new text' if mem.get('traffic') == REAL else 'the same body'}, from "
           f"{mem['distinct_identities_sent']} distinct identities "
           f"(cycle of {mem['identities']})")
    yield (f"  firewall RSS {mem['rss_start_mib']:.1f} MiB -> {mem['rss_end_mib']:.1f} MiB "
           f"(growth {mem['rss_growth_mib']:+.1f} MiB, max {mem['rss_max_mib']:.1f} MiB)")
    yield "  samples (s, MiB): " + " ".join(f"{t:g}:{m:g}" for t, m in mem["samples"])


def goal_lines(result: dict[str, Any]) -> Iterator[str]:
    """Each figure next to the issue's target, so a reader sees where the firewall stands."""
    def line(name: str, value: float | None, goal: str, ok: bool | None) -> str:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        shown = "-" if value is None else format(value, ".0f" if abs(value) >= 100 else ".3g")
        return f"  {name:<44}{shown:>10}  target {goal:<12}{verdict}"

    throughput = result.get("throughput", [])
    by = {(r["target"], r["variant"], r["concurrency"]): r for r in throughput}
    for variant, goal in ((REAL, GOALS["real_share"]), (FIXED, GOALS["share"])):
        for c in (16, 64):
            fw = by.get(("firewall", variant, c))
            if fw and fw["share_of_baseline"] is not None:
                share = fw["share_of_baseline"] * 100
                yield line(f"{variant} traffic: share of baseline at c={c} (%)", share, f">= {goal * 100:.0f}",
                           share >= goal * 100)
    for variant in VARIANTS:
        for c in (16, 64):
            fw, off = by.get(("firewall", variant, c)), by.get(("uninspected", variant, c))
            if fw and off and fw["cpu_us_per_req"] is not None and off["cpu_us_per_req"] is not None:
                shown = f"{fw['cpu_us_per_req'] - off['cpu_us_per_req']:.0f}"
                yield f"  {f'{variant}: inspection CPU per request, c={c} (us)':<44}{shown:>10}  informational"
    rows = {(r["target"], r["concurrency"]): r for r in throughput if r["variant"] == FIXED}
    fw1 = rows.get(("firewall", 1))
    if fw1 and fw1["added_p50_ms"] is not None:
        yield line("added p50 over direct at c=1 (ms)", fw1["added_p50_ms"], "<= 0.4",
                   fw1["added_p50_ms"] <= GOALS["added_p50_ms"])
        base1 = rows.get(("baseline", 1))
        if base1 and base1["added_p50_ms"] is not None:  # the floor any aiohttp proxy pays on this machine
            yield f"  {'the minimal proxy adds, at c=1 (ms)':<44}{base1['added_p50_ms']:>10.3g}  informational"
    fw_rows = [r for r in result.get("throughput", []) if r["target"] == "firewall"]
    if fw_rows:
        errors = sum(r["errors"] for r in fw_rows)
        yield line("firewall errors (all runs)", errors, "0", errors == 0)
    fw_stream = result.get("stream", {}).get("targets", {}).get("firewall")
    if fw_stream:
        inspection, added = fw_stream.get("inspection_us_per_event"), fw_stream.get("event_cpu_added_us")
        if inspection is not None:  # the target is the rules' cost; the proxying is shown beside it
            yield line("stream: inspection CPU per SSE event (us)", inspection, "<= 10", inspection <= GOALS["event_us"])  # noqa: E501
            yield f"  {'stream: CPU per SSE event over baseline (us)':<44}{fmt(added, '.3g'):>10}  informational"
        else:
            yield line("stream: CPU per SSE event over baseline (us)", added, "<= 10",
                       None if added is None else added <= GOALS["event_us"])
        busy = result["stream"].get("at_once", {}).get("targets", {}).get("firewall", {})
        if busy.get("inspection_us_per_event") is not None:
            name = f"  with {result['stream']['at_once']['connections']} streams at once (us)"
            yield f"{name:<46}{busy['inspection_us_per_event']:>10.3g}  informational"
        v = fw_stream.get("ttft_added_ms")
        yield line("stream: TTFT over baseline (ms)", v, "<= 1", None if v is None else v <= GOALS["ttft_ms"])
    scan = result.get("scan")
    if scan:
        rules = scan["rules_only"]["mb_s"]
        yield line("rules engine on 1.5 KB prompts (MB/s)", rules, ">= 100", rules >= GOALS["scan_mb_s"])
        full = f"{scan['full']['mb_s']:.3g}"
        yield f"  {'with the learned detector and scorer (MB/s)':<44}{full:>10}  informational"
        cold = f"{scan['rules_only']['cold_mb_s']:.3g} / {scan['full']['cold_mb_s']:.3g}"
        yield f"  {'the same two with caches cold (MB/s)':<44}{cold:>10}  informational"
        yield line("1 MiB prompt (ms)", scan["full"]["big_ms"], "<= 100", scan["full"]["big_ms"] <= GOALS["mib_ms"])
    mem = result.get("memory")
    if mem:
        yield line("RSS growth over the identities run (MiB)", mem["rss_growth_mib"], "<= 20",
                   mem["rss_growth_mib"] <= GOALS["rss_growth_mib"])


def report(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"llm-firewall bench: policy {env['policy']}, payload {env['payload']}, load generator {env['load_generator']}, "  # noqa: E501
             f"{env['cpus']} CPUs, pinning {'on (mock+load CPU 0, proxy CPU 1)' if env['pinned'] else 'off'}, "
             f"{env['duration_s']:g} s per run"
             + (f", {env['rounds']} interleaved rounds (medians)"
                if env.get("rounds", 1) > 1 and "memory" not in result else "")]
    texts = env.get("texts")
    if texts:
        only = f" labelled {texts['labels']}" if texts.get("labels") else ""
        lines.append(f"real traffic: {texts['count']} texts{only} of {texts['path']} ({texts['attacks']} labelled attacks, "  # noqa: E501
                     f"{texts['min_chars']}-{texts['max_chars']} chars) as the user turn after the payload's "
                     "system prompt, each request's text ending in a reference of its own; every request from "
                     "a client identity of its own")
    if result.get("throughput"):
        lines += ["", *throughput_table(result["throughput"]),
                  "(traffic: real = a new user text every request, fixed = the payload every request; +p50: added "
                  "over direct with the same traffic and concurrency; % base: req/s as a share of the baseline "
                  "proxy's on the same traffic; refused: 4xx answers, whose path (alert, audit, no upstream "
                  "call) costs differently from forwarding; CPU and RSS are of the process serving the target)"]
    if result.get("stream"):
        lines += ["", *stream_table(result["stream"])]
    if result.get("scan"):
        lines += ["", *scan_lines(result["scan"])]
    if result.get("memory"):
        lines += ["", *memory_lines(result["memory"])]
    for where, checks in (("load", result.get("preflight", {})),
                          ("stream", result.get("stream", {}).get("preflight", {})),
                          ("memory", result.get("memory", {}).get("preflight", {}))):
        for target, check in checks.items():
            if check["status"] != 200:
                lines += ["", f"WARNING: {LABELS[target]} answered the {where} payload with HTTP {check['status']} "
                              f"({check.get('detail', '')}): its figures measure that answer, not a forwarded request"]
    goals = list(goal_lines(result))
    if goals:
        lines += ["", "Against the issue's targets (one run; only ratios carry over between machines):", *goals]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point

def parse_args(argv: list[str]) -> argparse.Namespace:
    if argv[:1] == ["--"]:  # `llm-firewall bench -- --quick` hands the separator through
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="llm-firewall bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default=None, help="comma-separated connection counts (default 1,16,64)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per load run (default 5)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="throughput runs per target, taking turns; figures are medians (default 3; --quick 1)")
    parser.add_argument("--policy", default="production", help="firewall policy preset or YAML path")
    parser.add_argument("--stream", action="store_true", help="also measure TTFT and per-event cost")
    parser.add_argument("--scan", action="store_true", help="also measure the rules engine in-process")
    parser.add_argument("--identities", type=int, default=0,
                        help="memory run only: N distinct client identities (use with --duration 60)")
    parser.add_argument("--payload", type=Path, default=PAYLOADS / "request.json",
                        help="chat request: the fixed body, and the system prompt and fields of the real "
                             "traffic (default: the baseline's 1.5 KB request)")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS,
                        help="labelled JSONL whose 'text' fields are the real traffic's user turns "
                             "(default: the shipped examples/sample.jsonl)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated labels: only the --texts rows with one of them (e.g. benign)")
    parser.add_argument("--traffic", default=",".join(VARIANTS),
                        help="which traffic to send: real (a new user text every request), fixed (the payload "
                             "every request), or both (default real,fixed)")
    parser.add_argument("--stream-payload", type=Path, default=PAYLOADS / "request_stream.json",
                        help="streaming chat request body for --stream (default: the baseline's)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="subset of " + ",".join(TARGETS))
    parser.add_argument("--load-generator", choices=["auto", "wrk", "builtin"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--quick", action="store_true",
                        help="1 s runs at 1,16, one round, few streams: a smoke run")
    args = parser.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    default_conc = "1,16" if args.quick else "1,16,64"
    try:
        args.concurrency = [int(c) for c in (args.concurrency or default_conc).split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency takes comma-separated integers, e.g. 1,16,64")
    if not args.concurrency or min(args.concurrency) < 1 or max(args.concurrency) > 10_000:
        parser.error("--concurrency values must be between 1 and 10000")
    if not 0.5 <= args.duration <= 3600:
        parser.error("--duration must be between 0.5 and 3600 seconds")
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or "direct" not in args.targets:
        parser.error(f"--targets is a subset of {','.join(TARGETS)} that includes direct")
    args.targets = [t for t in TARGETS if t in args.targets]
    if args.identities < 0:
        parser.error("--identities must be positive")
    if not args.payload.is_file():
        parser.error(f"--payload {args.payload}: no such file")
    args.payload = args.payload.resolve()
    args.traffic = [t.strip() for t in args.traffic.split(",") if t.strip()]
    if not args.traffic or set(args.traffic) - set(VARIANTS):
        parser.error("--traffic is real, fixed or real,fixed")
    args.traffic = [t for t in VARIANTS if t in args.traffic]
    try:
        args.fixed_bodies = fixed_bodies(args.payload.read_bytes())
    except ValueError as exc:
        parser.error(f"--payload {args.payload}: {exc}")
    try:
        labels = {x.strip() for x in args.labels.split(",") if x.strip()} if args.labels else None
        args.texts = read_texts(args.texts, labels) if REAL in args.traffic else None
    except (OSError, ValueError) as exc:
        parser.error(f"--texts: {exc}")
    if not args.stream_payload.is_file():
        parser.error(f"--stream-payload {args.stream_payload}: no such file")
    return args


def texts_summary(texts: Texts, labels: str | None) -> dict[str, Any]:
    low, high = texts.chars
    return {"path": str(texts.path), "labels": labels, "count": len(texts.texts), "attacks": texts.attacks,
            "min_chars": low, "max_chars": high}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    use_wrk = args.load_generator == "wrk" or (args.load_generator == "auto" and shutil.which("wrk") is not None)
    if use_wrk and shutil.which("wrk") is None:
        print("llm-firewall bench: --load-generator wrk but wrk is not installed", file=sys.stderr)
        return 2
    pin = not args.no_pin and pinning_available()
    workdir = Path(tempfile.mkdtemp(prefix="llm-firewall-bench-"))
    procs = Processes(workdir, pin)
    load = Load(use_wrk, pin, workdir)
    result: dict[str, Any] = {"environment": {
        "policy": args.policy, "payload": args.payload.name, "load_generator": "wrk" if use_wrk else "built-in asyncio",
        "cpus": os.cpu_count(), "pinned": pin, "duration_s": args.duration, "rounds": args.rounds,
        "python": sys.version.split()[0], "traffic": args.traffic}}
    if args.texts is not None:
        result["environment"]["texts"] = texts_summary(args.texts, args.labels)
    bodies = {FIXED: write_bodies(workdir / "fixed.jsonl", args.fixed_bodies)}
    if args.texts is not None:
        bodies[REAL] = write_bodies(workdir / "real.jsonl", real_bodies(args.payload.read_bytes(), args.texts))
    try:
        if args.identities:
            result["memory"] = memory_phase(procs, load, args.policy, args.identities, min(max(args.concurrency), 64),
                                            args.duration, bodies[args.traffic[0]], args.fixed_bodies[0])
            result["memory"]["traffic"] = args.traffic[0]
        else:
            stack = Stack(procs, args.policy, args.targets)
            result["environment"]["ports"] = stack.ports
            stack.up()
            result["throughput"] = throughput_phase(stack, load, args.concurrency, args.duration,
                                                    0.5 if args.quick else 2.0,
                                                    {v: bodies[v] for v in args.traffic}, rounds=args.rounds)
            result["preflight"] = stack.preflight
        if args.stream:
            result["stream"] = stream_phase(procs, load, args.policy, args.targets, 5 if args.quick else 100,
                                            args.stream_payload)
        if args.scan:
            result["scan"] = scan_phase(args.quick)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"llm-firewall bench: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else report(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
