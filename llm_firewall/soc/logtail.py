"""Watch other services' log files (like fail2ban) and scan the requests they record.

The tailer follows a file across rotation (the path points to a new inode) and truncation
(copytruncate: the size shrinks), reads only complete lines, and bounds what one poll may read,
so a huge or hostile log cannot stall the SOC. Parsing understands JSON lines and the
nginx/Apache common and combined access-log formats.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from llm_firewall.domain import SEVERITY_RANK, Finding
from llm_firewall.redact import redact_secrets

log = logging.getLogger(__name__)

FORMATS = ("json", "combined", "common")


@dataclass(frozen=True, slots=True)
class LogSource:
    """A log file to watch and the action(s) to take against the client IP of a hostile line."""

    path: str
    format: str = "combined"  # json | combined | common
    ban: Any = field(default_factory=lambda: {"block_ip": {"duration_s": 3600}})  # one spec or a list
    name: str = ""
    from_start: bool = False  # read an existing file from its beginning instead of its end
    poll_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"log source {self.path}: format must be one of {', '.join(FORMATS)}, not {self.format!r}")

    @property
    def label(self) -> str:
        return self.name or os.path.basename(self.path)

    def ban_actions(self) -> list[Any]:
        if self.ban is None:
            return []
        return list(self.ban) if isinstance(self.ban, (list, tuple)) else [self.ban]


class FileTailer:
    """Returns the complete lines appended to `path` since the last call (blocking file I/O:
    call it from a worker thread)."""

    def __init__(self, path: str, *, from_start: bool = False, max_line: int = 16_384,
                 max_read: int = 1 << 20) -> None:
        self.path = path
        self.max_line = max_line
        self.max_read = max_read
        self._fh: Any = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0
        self._buf = b""
        # Like `tail -F`: what a file held when watching began is history, not news. Recorded
        # now (not at the first poll) so lines written in between are not skipped.
        self._start_at: tuple[tuple[int, int], int] | None = None
        if not from_start:
            try:
                st = os.stat(path)
                self._start_at = ((st.st_dev, st.st_ino), st.st_size)
            except OSError:
                pass
        self.rotations = 0
        self.truncations = 0
        self.long_lines = 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self, st: os.stat_result) -> None:
        self.close()
        self._fh = open(self.path, "rb")
        self._ident = (st.st_dev, st.st_ino)
        start, self._start_at = self._start_at, None
        self._pos = start[1] if start is not None and start[0] == self._ident and start[1] <= st.st_size else 0
        self._fh.seek(self._pos)
        self._buf = b""

    def _read(self, limit: int) -> list[str]:
        data = self._fh.read(limit)
        self._pos += len(data)
        return self._split(data)

    def _split(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self.max_line:  # a line that never ends: keep its head only
            self.long_lines += 1
            lines.append(self._buf[: self.max_line])
            self._buf = b""
        return [ln[: self.max_line].decode("utf-8", "replace").rstrip("\r") for ln in lines if ln.strip()]

    def read_new(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # rotated away and not recreated yet: finish the old file, then wait
            return self._read(self.max_read) if self._fh is not None else []
        lines: list[str] = []
        if self._fh is None:
            self._open(st)
        elif (st.st_dev, st.st_ino) != self._ident:
            lines = self._read(self.max_read)  # the rest of the rotated file
            if self._buf:
                lines.extend(self._split(b"\n"))
            self.rotations += 1
            self._open(st)
        elif st.st_size < self._pos:
            self.truncations += 1
            self._pos = 0
            self._fh.seek(0)
            self._buf = b""
        lines.extend(self._read(self.max_read))
        return lines


# --- parsing -------------------------------------------------------------------------------------
_Q = r'"((?:[^"\\]|\\.)*)"'
_ACCESS = re.compile(
    r"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]*)\] " + _Q.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}|-) (?P<size>\S+)"
    + r"(?: " + _Q.replace("(", "(?P<referer>", 1) + r" " + _Q.replace("(", "(?P<ua>", 1) + r")?"
)
_HEX_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")

_JSON_KEYS = {
    "ip": ("remote_addr", "client_ip", "ip", "src_ip", "remote_ip", "clientip"),
    "target": ("request_uri", "uri", "url", "path", "request_path", "target"),
    "query": ("query_string", "args", "query"),
    "request": ("request",),
    "ua": ("http_user_agent", "user_agent", "ua", "agent"),
    "referer": ("http_referer", "referer", "referrer"),
    "status": ("status", "status_code", "response_status"),
    "user": ("remote_user", "user", "user_id"),
}


def _unescape(value: str) -> str:
    """nginx writes `"` and non-printables as \\xHH; Apache escapes quotes with a backslash."""
    value = _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return value.replace('\\"', '"').replace("\\\\", "\\")


def parse_line(line: str, fmt: str) -> dict[str, str] | None:
    """Fields of one log line (ip, method, target, ua, referer, status, user), or None."""
    if fmt == "json":
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        out: dict[str, str] = {}
        for field_name, keys in _JSON_KEYS.items():
            for k in keys:
                if obj.get(k) not in (None, ""):
                    out[field_name] = str(obj[k])
                    break
        if "request" in out and "target" not in out:
            parts = out["request"].split(" ")
            if len(parts) >= 2:
                out["method"], out["target"] = parts[0], parts[1]
        if "query" in out and "target" in out and "?" not in out["target"]:
            out["target"] = f"{out['target']}?{out['query']}"
        return out or None
    m = _ACCESS.match(line)
    if not m:
        return None
    request = _unescape(m.group("request"))
    parts = request.split(" ")
    out = {"ip": m.group("ip"), "status": m.group("status"), "user": m.group("user")}
    if len(parts) >= 2:
        out["method"], out["target"] = parts[0], " ".join(parts[1:-1]) if len(parts) > 2 else parts[1]
    else:
        out["target"] = request
    if m.group("ua") is not None:
        out["ua"] = _unescape(m.group("ua"))
        out["referer"] = _unescape(m.group("referer"))
    return out


def decode_url(text: str, rounds: int = 3) -> str:
    """URL-decode repeatedly (double encoding is a classic evasion), bounded."""
    for _ in range(rounds):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def scan_record(record: dict[str, str], scan_line: Callable[[str], list[Finding]]) -> list[Finding]:
    """Run the request-side rules on the decoded target and the user agent of one record."""
    findings: list[Finding] = []
    texts = []
    if record.get("target"):
        texts.append(("url", decode_url(record["target"])))
    if record.get("ua") and record["ua"] != "-":
        texts.append(("user_agent", record["ua"]))
    if record.get("referer") and record["referer"] != "-":
        texts.append(("referer", decode_url(record["referer"])))
    for where, text in texts:
        for f in scan_line(text):
            if f.status == "experimental":
                continue
            f.path = f.path or where
            findings.append(f)
    return findings


def log_alert(source: LogSource, record: dict[str, str], findings: list[Finding], ts: float) -> dict[str, Any]:
    """The SOC alert for a hostile log line: addressed at its client IP, carrying the ban."""
    top = max(findings, key=lambda f: f.rank)
    ip = record.get("ip", "")
    excerpt = redact_secrets(top.excerpt or decode_url(record.get("target", "")))[:300]
    return {
        "type": "alert",
        "source": f"log:{source.label}",
        "ts": ts,
        "threat": top.threat,
        "category": top.category,
        "severity": top.severity,
        "title": f"{top.title} in {source.label}",
        "rule_ids": sorted({f.rule_id for f in findings}),
        "fp_probability": top.fp_probability,
        "recommendation": "block" if SEVERITY_RANK.get(top.severity, 0) >= SEVERITY_RANK["medium"] else "monitor",
        "excerpt": excerpt,
        "identity": {"ip": ip} if ip and ip != "-" else {},
        "soc_actions": source.ban_actions(),
        "log": {"path": source.path, "method": record.get("method"), "status": record.get("status")},
    }
