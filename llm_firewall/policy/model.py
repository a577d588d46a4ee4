"""Policy files (YAML) turned into frozen, validated dataclasses.

Operators edit these files by hand and reload them on a live proxy, so every mistake must be
reported with the file, the line and the field, and nothing half-valid may ever be returned.
This module reads the file, resolves `extends` and `${ENV}`, validates the result with the typed
models of `policy.spec` and locates their errors in the YAML. Loading is pure (no server
imports): the caller decides what to do with a `PolicyError` (the server keeps the last good
policy). The dataclasses themselves live in `policy.types` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llm_firewall.policy.spec import PolicySpec, hidden_in_paths, to_policy
from llm_firewall.policy.types import BASE_MARKER, DEFAULT_PRESET, Policy, PolicyError
from llm_firewall.policy.types import Action, Escalation, IdentityConfig, RateLimit, ResponseRule  # noqa: F401  (importers know them here)
from llm_firewall.schema.located import LDict, LList, LocatedError, field_path, plain, read, where
from llm_firewall.schema.typed import problems

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _read_yaml(path: Path) -> LDict:
    src = _display(path)
    try:
        data = read(path, src)
    except LocatedError as exc:
        raise PolicyError(str(exc)) from None
    if data is None:
        raise PolicyError(f"{src}:1: empty policy file")
    if not isinstance(data, LDict):
        raise PolicyError(f"{src}:1: a policy file must be a mapping at top level")
    return data


def _merge(parent: Any, child: Any) -> Any:
    """Child wins; mappings merge key by key; a list containing "$base" splices the parent's."""
    if isinstance(parent, LDict) and isinstance(child, LDict):
        out = LDict(parent)
        out.loc, out.key_locs = child.loc, dict(parent.key_locs)
        for key, value in child.items():
            out[key] = _merge(parent[key], value) if key in parent else value
            out.key_locs[key] = child.key_locs[key]
        return out
    if isinstance(child, LList) and any(item == BASE_MARKER for item in child):
        out_l = LList()
        out_l.loc, out_l.item_locs = child.loc, []
        base_items = list(parent) if isinstance(parent, list) else []
        base_locs = list(getattr(parent, "item_locs", [child.loc] * len(base_items)))
        for item, loc in zip(child, child.item_locs):
            if item == BASE_MARKER:
                out_l.extend(base_items)
                out_l.item_locs.extend(base_locs)
            else:
                out_l.append(item)
                out_l.item_locs.append(loc)
        return out_l
    return child


def _error(doc: LDict, name: str, loc: tuple[str | int, ...], message: str) -> PolicyError:
    src, line = where(doc, loc) or doc.loc
    return PolicyError(f"{src}:{line}: policy {name!r}: field {field_path(loc)!r}: {message}")


def _substitute_env(data: Any, doc: LDict, name: str, loc: tuple[str | int, ...] = ()) -> Any:
    """Replace ${NAME} and ${NAME:-default} in strings; a missing variable is an error."""
    if isinstance(data, (dict, list)):
        for key in list(data) if isinstance(data, dict) else range(len(data)):
            data[key] = _substitute_env(data[key], doc, name, (*loc, key))
        return data
    if isinstance(data, str) and "${" in data:
        def repl(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is None:
                    raise _error(doc, name, loc, f"environment variable {m.group(1)} is not set")
                return m.group(2)
            return value

        return _ENV.sub(repl, data)
    return data


# --------------------------------------------------------------------------------------------
# Loading


def default_policies_dir() -> Path:
    """The repository's policies/ in a checkout; the copy bundled in the package otherwise."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "policies"
    if checkout.is_dir() and (checkout / f"{DEFAULT_PRESET}.yaml").is_file():
        return checkout
    return here.parents[1] / "bundled" / "policies"


def _resolve(name_or_path: str, directory: Path, relative_to: Path | None = None) -> Path:
    looks_like_path = any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(name_or_path)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        return path
    if not _NAME.fullmatch(name_or_path):
        raise PolicyError(f"invalid policy name {name_or_path!r}")
    return directory / f"{name_or_path}.yaml"


def _load_chain(path: Path, directory: Path, seen: tuple[Path, ...]) -> LDict:
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []
        raise PolicyError(f"{_display(path)}: policy file not found (presets in {_display(directory)}: {', '.join(known) or 'none'})")
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(_display(p) for p in seen + (real,))
        raise PolicyError(f"{_display(path)}:1: 'extends' loops: {chain}")
    data = _read_yaml(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data
    src, line = data.key_locs.get("extends", data.loc)
    if not isinstance(parent_name, str) or not parent_name:
        raise PolicyError(f"{src}:{line}: field 'extends': expected a policy name or path")
    # A name is looked up next to the extending file, then in the policies directory, then
    # among the shipped presets (so an operator's own file can say `extends: production`).
    for where_dir in (path.parent, directory, default_policies_dir()):
        parent_path = _resolve(parent_name, where_dir, relative_to=path.parent)
        if parent_path.is_file():
            break
    try:
        parent = _load_chain(parent_path, directory, seen + (real,))
    except PolicyError as exc:
        raise PolicyError(f"{src}:{line}: field 'extends': {exc}") from None
    return _merge(parent, data)


def load_policy(name_or_path: str, policies_dir: str | Path | None = None) -> Policy:
    """Load a preset by name or a policy file by path, with its `extends` chain resolved.

    Raises PolicyError naming file, line, policy and field for anything wrong; never returns a
    partially valid policy.
    """
    directory = Path(policies_dir) if policies_dir is not None else default_policies_dir()
    path = _resolve(str(name_or_path), directory)
    data = _load_chain(path, directory, ())
    # The digest covers the resolved document before ${ENV} substitution: it identifies the
    # policy text in status and audit without depending on (or hinting at) secret values.
    digest = hashlib.sha256(json.dumps(plain(data), sort_keys=True, default=str).encode()).hexdigest()
    name = data["name"] if isinstance(data.get("name"), str) else path.stem
    data = _substitute_env(data, data, name)
    try:
        spec = PolicySpec.model_validate(plain(data))
    except ValidationError as exc:
        loc, message = problems(exc, hidden_in_paths)[0]
        raise _error(data, name, loc, message) from None
    return to_policy(spec, str(path), digest)


def list_presets(policies_dir: str | Path | None = None) -> list[str]:
    directory = Path(policies_dir) if policies_dir is not None else default_policies_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.stem != "base")
