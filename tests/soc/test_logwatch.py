import json
import os
import re

import pytest

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.domain import Finding
from llm_firewall.soc.logtail import FileTailer, LogSource, parse_line
from llm_firewall.soc.pipeline import SocPipeline

SQLI = re.compile(r"(?i)('\s*or\s+\d+\s*=\s*\d+|union\s+select|;\s*drop\s+table)")
TRAVERSAL = re.compile(r"\.\./\.\./")


def scan_line(text: str) -> list[Finding]:
    """A tiny stand-in for the request-side rules: SQL injection and traversal."""
    out = []
    if m := SQLI.search(text):
        out.append(Finding("SQLI-T1", "SQL injection", "malicious_input", "high",
                           category="sql_injection", excerpt=m.group(0)))
    if m := TRAVERSAL.search(text):
        out.append(Finding("PT-T1", "Path traversal", "malicious_input", "medium",
                           category="path_traversal", excerpt=m.group(0)))
    return out


def access_line(ip: str, target: str, ua: str = "Mozilla/5.0") -> str:
    return f'{ip} - - [26/Nov/2026:03:00:00 +0000] "GET {target} HTTP/1.1" 200 512 "-" "{ua}"\n'


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


async def test_sql_injection_in_access_log_bans_the_client_also_after_rotation(tmp_path, enforcement, wait_for):
    log_path = tmp_path / "access.log"
    append(log_path, access_line("192.0.2.50", "/items?id=1'%20OR%201=1--"))  # old: before we watched
    alerts: list[dict] = []
    source = LogSource(str(log_path), format="combined", poll_interval_s=0.02,
                       ban={"block_ip": {"duration_s": 3600}})
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      on_alert=alerts.append, log_sources=[source], scan_line=scan_line)
    await soc.start()
    try:
        await wait_for(lambda: soc.status()["log_sources"][str(log_path)].get("rotations") == 0)
        append(log_path, access_line("198.51.100.23", "/search?q=shoes"))
        append(log_path, access_line("203.0.113.7", "/items?id=1%27%20OR%201%3D1--"))
        await wait_for(lambda: len(enforcement.executed("block_ip")) == 1)
        (ban,) = enforcement.executed("block_ip")
        assert ban.subject == {"ip": "203.0.113.7"} and ban.params == {"duration_s": 3600}
        (alert,) = [a for a in alerts if a.get("type") == "soc_alert"]
        assert alert["threat"] == "malicious_input" and alert["identity"] == {"ip": "203.0.113.7"}
        assert alert["rule_ids"] == ["SQLI-T1"] and alert["source"] == "log:access.log"

        # logrotate: the file is moved away and a new one takes its path
        os.rename(log_path, tmp_path / "access.log.1")
        append(log_path, access_line("203.0.113.99", "/p?x=1+UNION+SELECT+password+FROM+users"))
        await wait_for(lambda: len(enforcement.executed("block_ip")) == 2)
        assert enforcement.executed("block_ip")[1].subject == {"ip": "203.0.113.99"}
        assert soc.status()["log_sources"][str(log_path)]["rotations"] == 1

        # copytruncate: same file, emptied, then written again
        with open(log_path, "w"):
            pass
        append(log_path, access_line("203.0.113.150", "/static/../../etc/passwd"))
        await wait_for(lambda: len(enforcement.executed("block_ip")) == 3)
        assert enforcement.executed("block_ip")[2].subject == {"ip": "203.0.113.150"}
    finally:
        await soc.stop()
    assert all(a.subject["ip"] != "192.0.2.50" for a in enforcement.executed())  # pre-existing line ignored
    intents = [r for k, r in enforcement.audit if k == "soc.action.intent"]
    assert [r["source"] for r in intents] == ["log:access.log"] * 3


async def test_flood_from_one_ip_in_json_log_gives_one_ban(tmp_path, enforcement, wait_for):
    log_path = tmp_path / "app.jsonl"
    source = LogSource(str(log_path), format="json", poll_interval_s=0.02)
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      log_sources=[source], scan_line=scan_line)
    await soc.start()
    try:
        lines = "".join(json.dumps({"remote_addr": "203.0.113.8", "request": f"GET /a?id={i}'+or+1=1 HTTP/1.1",
                                    "status": 200}) + "\n" for i in range(50))
        append(log_path, lines + "not json at all\n")
        await wait_for(lambda: soc.status()["log_sources"][str(log_path)].get("alerts") == 50)
        await wait_for(lambda: soc.status()["incidents"]["alerts"] == 50)
        assert soc.status()["log_sources"][str(log_path)]["unparsed"] == 1
    finally:
        await soc.stop()
    assert len(enforcement.executed("block_ip")) == 1


def test_tailer_reads_complete_lines_only_and_handles_missing_file(tmp_path):
    path = tmp_path / "x.log"
    t = FileTailer(str(path))
    assert t.read_new() == []  # absent at first: later content is read from the start
    append(path, "one\ntw")
    assert t.read_new() == ["one"]
    append(path, "o\n")
    assert t.read_new() == ["two"]
    os.rename(path, tmp_path / "x.log.1")
    append(tmp_path / "x.log.1", "late line in old file\n")
    assert t.read_new() == ["late line in old file"]
    append(path, "three\n")
    assert t.read_new() == ["three"] and t.rotations == 1
    t.close()


@pytest.mark.parametrize("line,expected", [
    ('10.1.2.3 - alice [26/Nov/2026:03:00:00 +0000] "GET /a%20b?q=1 HTTP/1.1" 404 -',
     {"ip": "10.1.2.3", "user": "alice", "method": "GET", "target": "/a%20b?q=1", "status": "404"}),
    ('10.1.2.3 - - [26/Nov/2026:03:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "sqlmap/1.7 \\x22q\\x22"',
     {"ip": "10.1.2.3", "target": "/x", "ua": 'sqlmap/1.7 "q"'}),
])
def test_access_log_formats_parse(line, expected):
    record = parse_line(line, "combined")
    assert {k: record[k] for k in expected} == expected


def test_garbage_lines_do_not_parse():
    assert parse_line("hello world", "common") is None
    assert parse_line("[1,2]", "json") is None
    with pytest.raises(ValueError, match="format"):
        LogSource("/tmp/x", format="syslog")


async def test_real_rules_engine_flags_sql_injection_in_a_url(tmp_path, enforcement, wait_for):
    engine = Engine(load_rules(default_rules_dir()))
    probe = "/items?id=1' UNION SELECT username, password FROM users--"
    assert any(f.threat == "malicious_input" for f in engine.scan_text(probe))
    log_path = tmp_path / "access.log"
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      log_sources=[LogSource(str(log_path), poll_interval_s=0.02)],
                      scan_line=lambda text: engine.scan_text(text))
    await soc.start()
    try:
        append(log_path, access_line("203.0.113.77",
                                     "/items?id=1%27%20UNION%20SELECT%20username,%20password%20FROM%20users--"))
        await wait_for(lambda: len(enforcement.executed("block_ip")) == 1)
    finally:
        await soc.stop()
    assert enforcement.executed("block_ip")[0].subject == {"ip": "203.0.113.77"}
