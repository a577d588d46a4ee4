"""Prints what the SOC costs: `python -m llm_firewall.soc.bench`.

Figures only (never asserted in tests): the inline cost of `submit`, end-to-end pipeline
throughput with a no-op enforcement layer, and log-line scanning throughput.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from typing import Any

from llm_firewall.domain import Finding
from llm_firewall.soc.logtail import LogSource
from llm_firewall.soc.pipeline import SocPipeline
from llm_firewall.soc.playbook import Playbook

_SQLI = re.compile(r"(?i)union\s+select|'\s*or\s+1\s*=\s*1")


def _scan(text: str) -> list[Finding]:
    m = _SQLI.search(text)
    return [Finding("SQLI", "SQL injection", "malicious_input", "high", excerpt=m.group(0))] if m else []


async def _noop_remediate(pb: Playbook) -> list[dict[str, Any]]:
    return [{"status": "done"} for _ in pb.actions]


async def _noop_audit(kind: str, record: dict) -> int:
    return 0


def _alert(i: int) -> dict:
    return {"type": "alert", "alert_id": f"b{i}", "threat": "prompt_injection", "severity": "high",
            "fp_probability": 0.1, "identity": {"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"},
            "soc_actions": [{"block_ip": {"duration": "1h"}}]}


def _write_access_log(path: str, lines: int) -> None:
    """An nginx access log with one SQL injection in every hundred lines."""
    with open(path, "w") as fh:
        for i in range(lines):
            target = "/p?id=1'+or+1=1" if i % 100 == 0 else f"/static/app.js?v={i}"
            fh.write(f'10.0.{i >> 8 & 255}.{i & 255} - - [26/Nov/2026:03:00:00 +0000] "GET {target} HTTP/1.1" '
                     f'200 512 "-" "Mozilla/5.0"\n')


async def main(n: int = 20_000) -> None:
    soc = SocPipeline(remediate=_noop_remediate, audit_append=_noop_audit, queue_size=n)
    events = [_alert(i) for i in range(n)]
    t0 = time.perf_counter()
    for e in events:
        soc.submit(e)
    submit_us = (time.perf_counter() - t0) / n * 1e6
    full = SocPipeline(remediate=_noop_remediate, audit_append=_noop_audit, queue_size=1000)
    t0 = time.perf_counter()
    for e in events:
        full.submit(e)  # the queue is full after 1000: the drop path
    drop_us = (time.perf_counter() - t0) / n * 1e6

    await soc.start()
    t0 = time.perf_counter()
    while soc.status()["remediator"]["executed"] < n:  # noqa: ASYNC110 - a counter, polled as a reader would
        await asyncio.sleep(0.01)
    e2e = n / (time.perf_counter() - t0)
    await soc.stop()

    lines = 50_000
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "access.log")
        _write_access_log(path, lines)
        tail = SocPipeline(remediate=_noop_remediate, audit_append=_noop_audit, scan_line=_scan,
                           log_sources=[LogSource(path, from_start=True, poll_interval_s=0.01)])
        t0 = time.perf_counter()
        await tail.start()
        while tail.status()["log_sources"][path].get("lines", 0) < lines:  # noqa: ASYNC110 - as above
            await asyncio.sleep(0.01)
        lps = lines / (time.perf_counter() - t0)
        await tail.stop()

    print(f"submit() accepted      {submit_us:8.2f} us/event")
    print(f"submit() queue full    {drop_us:8.2f} us/event (drop_oldest)")
    print(f"alert -> ban executed  {e2e:8.0f} alerts/s (no-op enforcement, {n} alerts)")
    print(f"log lines scanned      {lps:8.0f} lines/s (combined format, toy rule)")


if __name__ == "__main__":
    asyncio.run(main())
