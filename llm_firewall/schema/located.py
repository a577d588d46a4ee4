"""YAML read with the file and line of every key and list item.

Operators edit rules and policies by hand, so a mistake must be reported at its line. Mappings
and lists come back as `LDict` / `LList`, plain `dict` / `list` subclasses that also remember
where each key and item was written; `where(doc, loc)` turns a field path (as pydantic reports
it) into that place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

Where = tuple[str, int]  # (file as displayed, 1-based line)


class LocatedError(ValueError):
    """A file that is not usable YAML; `key` names the offending key when there is one."""

    def __init__(self, file: str, line: int | None, message: str, key: str | None = None) -> None:
        self.file, self.line, self.message, self.key = file, line, message, key
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class LDict(dict):
    """A mapping that remembers where it and each of its keys came from."""

    loc: Where
    key_locs: dict[Any, Where]


class LList(list):
    """A list that remembers where it and each of its items came from."""

    loc: Where
    item_locs: list[Where]


def _from_node(node: yaml.Node, src: str, loader: Any) -> Any:
    loc = (src, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = LDict()
        out.loc, out.key_locs = loc, {}
        for key_node, value_node in node.value:
            key = _from_node(key_node, src, loader)
            kline = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)):
                raise LocatedError(src, kline, "mapping keys must be plain scalars")
            if key in out:
                raise LocatedError(src, kline, f"duplicate key {key!r}", key=str(key))
            out[key] = _from_node(value_node, src, loader)
            out.key_locs[key] = (src, kline)
        return out
    if isinstance(node, yaml.SequenceNode):
        out_l = LList(_from_node(item, src, loader) for item in node.value)
        out_l.loc = loc
        out_l.item_locs = [(src, item.start_mark.line + 1) for item in node.value]
        return out_l
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # e.g. 2026-13-01 read as a date
        raise LocatedError(src, loc[1], f"invalid value {node.value!r}: {exc}") from None


# libyaml's parser when PyYAML was built with it (several times faster on the rule files).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, src: str) -> Any:
    """The YAML document in `text` with positions (None for an empty document)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _from_node(node, src, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise LocatedError(src, mark.line + 1 if mark is not None else None, f"invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def read(path: Path, src: str) -> Any:
    """`parse` of a file; an unreadable file is a LocatedError too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocatedError(src, None, f"cannot read: {exc}") from None
    return parse(text, src)


def where(doc: Any, loc: Sequence[str | int], fallback: Where | None = None) -> Where | None:
    """The place of the deepest part of `loc` that exists in `doc` (a missing key: its mapping)."""
    node, here = doc, getattr(doc, "loc", fallback)
    for part in loc:
        if isinstance(node, LDict) and part in node:
            here, node = node.key_locs.get(part, node.loc), node[part]
        elif isinstance(node, LList) and isinstance(part, int) and 0 <= part < len(node):
            here, node = node.item_locs[part], node[part]
        else:
            break
    return here


def field_path(loc: Sequence[str | int]) -> str:
    """('responses', 1, 'do', 0) -> 'responses[1].do[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def plain(value: Any) -> Any:
    """Positions dropped: plain dicts (string keys) and lists, e.g. for hashing or JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
