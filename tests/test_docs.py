"""The documentation works as written, for anyone with the repository.

A shell or Python block of README.md or docs/*.md preceded by `<!-- runnable -->` (or whose fence
says `sh (run)`) is run as written in a fresh copy of the repository, with the project's Python
first on the PATH (as with the virtual environment of the front page active); a block marked
`<!-- runnable: firewall -->` (`sh (run, firewall)`) gets a firewall started for it on a free
127.0.0.1 port, which replaces the documented 127.0.0.1:8080, and stopped afterwards. Blocks that
need the network or Docker are not marked. Every relative link must resolve inside the
repository, the front page stays short, and docs/architecture.md names every module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.support.firewall import ROOT, Firewall

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 210
BLOCK_TIMEOUT_S = 240
DOCUMENTED_ADDRESS = "127.0.0.1:8080"
_MARKER = re.compile(r"<!--\s*runnable(?::\s*(firewall))?\s*-->")
_INFO = re.compile(r"^(sh|bash|python)\s*\(run(?:,\s*(firewall))?\)")
_LANGS = {"sh": "sh", "bash": "sh", "python": "python"}
_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache",
                                      ".mypy_cache", ".ruff_cache", "node_modules")
_MD = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str  # "sh" or "python"
    needs_firewall: bool
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def runnable_blocks(page: Path) -> list[Block]:
    """The blocks of one page marked runnable, by a comment just before them or their fence."""
    blocks: list[Block] = []
    marker: re.Match[str] | None = None
    for token in _MD.parse(page.read_text(encoding="utf-8")):
        if token.type == "html_block":
            marker = _MARKER.search(token.content)
            continue
        if token.type == "fence":
            info = _INFO.match(token.info)
            lang = token.info.split()[0] if token.info.split() else ""
            if info or (marker and lang in _LANGS):
                assert lang in _LANGS, f"{page.name}:{token.map[0] + 1}: runnable blocks are sh or python"
                firewall = bool(info.group(2) if info else marker.group(1))  # type: ignore[union-attr]
                blocks.append(Block(page, token.map[0] + 1, _LANGS[lang], firewall, token.content))
        if token.type not in ("html_block",) and token.level == 0 and token.nesting >= 0:
            marker = None
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in runnable_blocks(page)]


def _checkout(tmp: Path) -> Path:
    """A copy of the repository with `.venv/bin` holding this interpreter and the command."""
    repo = tmp / "repo"
    shutil.copytree(ROOT, repo, ignore=_COPY_IGNORE, symlinks=True)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, target in (("python", ""), ("python3", ""), ("llm-firewall", " -m llm_firewall")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}"{target} "$@"\n')
        script.chmod(0o755)
    return repo


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_FIREWALL_"))}
    env["PATH"] = f"{repo / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_the_pages_have_runnable_blocks() -> None:
    """The extraction itself: the front page and the eval documentation are among them."""
    names = {b.page.name for b in ALL_BLOCKS}
    assert {"README.md", "detection.md", "rules.md", "policies.md", "http-api.md"} <= names
    assert any(b.needs_firewall and b.lang == "python" for b in ALL_BLOCKS)
    assert any("llm-firewall eval examples/sample.jsonl" in b.code for b in ALL_BLOCKS)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.name for b in ALL_BLOCKS])
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    code = block.code
    firewall = None
    if block.needs_firewall:
        assert DOCUMENTED_ADDRESS in code, f"{block.name}: a firewall block talks to {DOCUMENTED_ADDRESS}"
        firewall = Firewall(data_dir=tmp_path / "firewall-data").start()
        code = code.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{firewall.port}")
    args = ["bash", "-euo", "pipefail", "-c", code] if block.lang == "sh" else [sys.executable, "-c", code]
    try:
        done = subprocess.run(args, cwd=repo, env=_env(repo), capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
    finally:
        if firewall is not None:
            firewall.stop()
    assert done.returncode == 0, (f"{block.name} exited with {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-3000:]}")


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details into docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    tokens = _MD.parse(page.read_text(encoding="utf-8"))
    return {_slug(tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open"}


def _targets(page: Path) -> list[str]:
    out = []
    for token in _MD.parse(page.read_text(encoding="utf-8")):
        for child in token.children or ():
            if child.type == "link_open":
                out.append(str(child.attrs.get("href", "")))
            elif child.type == "image":
                out.append(str(child.attrs.get("src", "")))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    problems = []
    for target in _targets(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.is_relative_to(ROOT) or not dest.exists():
            problems.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    outside = [m.group(0) for m in re.finditer(r"(?<![\w/])\.\./[\w./-]+", text)
               if not (page.parent / m.group(0)).resolve().is_relative_to(ROOT)]
    assert not outside, f"{page.relative_to(ROOT)} names files outside the repository: {outside}"
    assert "DESIGN.md" not in text


def _modules() -> list[str]:
    pkg = ROOT / "llm_firewall"
    return sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                  if p.name != "__init__.py" and "bundled" not in p.parts)


def test_architecture_names_every_module_and_only_modules_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m in _modules()
               if f"`{m}`" not in text and f"`{m.split('/')[0]}/`" not in text]
    assert not missing, f"docs/architecture.md does not describe: {missing}"
    pkg = ROOT / "llm_firewall"
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    stale = [n for n in named
             if not (pkg / n).exists() and not (ROOT / n).exists() and not any(pkg.rglob(Path(n).name))]
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"
