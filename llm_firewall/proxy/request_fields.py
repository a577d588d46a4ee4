"""Every text the model reads in a request, in every role and field, with the role it stands in.

Why known fields plus a walk: the API grows, and a field the firewall does not know is still read
by the model. So each endpoint's known fields are read by their shape (with the role the model
gives them); fields the model never reads (`model`, `metadata`, sampling settings...) are skipped
by name; and every string under any other field, known or not, is read as text. Ids, enum values
and other labels are skipped only while they look like identifiers (a sentence in an `id` is
read). Schemas (tool parameters, response formats) are read whole, keys included, as one text.
A text the firewall cannot read (a PDF or an unknown binary in a file part) is refused with
`Unreadable`: it is never forwarded unread.

Pure: no I/O, no aiohttp; `request_texts` in openai_wire is the one entry point.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from llm_firewall.domain import TextItem

JOINED = "#"  # a path ending so: text joined from the strings (and keys) under the path
DECODED = "#decoded"  # a path ending so: text decoded from the (base64 or data: URL) string there


class Unreadable(ValueError):
    """A request part whose model-visible text the firewall cannot read: refused, not forwarded."""

    def __init__(self, message: str, param: str, code: str = "uninspectable_content") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# Top-level fields whose values the model never reads: routing, sampling, output settings,
# caller bookkeeping. Their strings are forwarded without inspection (docs/detection.md).
NOT_READ: frozenset[str] = frozenset({
    "model", "stream", "stream_options", "temperature", "top_p", "top_k", "n", "seed", "max_tokens",
    "max_completion_tokens", "max_output_tokens", "max_tool_calls", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "echo", "best_of", "stop",
    "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "metadata", "store",
    "service_tier", "parallel_tool_calls", "modalities", "audio", "reasoning_effort", "verbosity",
    "encoding_format", "dimensions", "previous_response_id", "conversation", "include",
    "truncation", "background", "reasoning",
})
# Keys whose string value labels rather than says (ids, enums, function and participant names);
# skipped while identifier-shaped: the learned detector cannot judge "reset_password" or
# "example_user", and a name with a sentence in it (spaces) is read like any text.
LABELS: frozenset[str] = frozenset({
    "id", "type", "role", "status", "call_id", "tool_call_id", "item_id", "file_id", "detail",
    "object", "format", "voice", "phase", "strict", "server_label", "name",
})
# Ciphertext the provider made (encrypted reasoning): only the provider can read it back.
OPAQUE: frozenset[str] = frozenset({"encrypted_content"})
# Keys that hold credentials for a tool server, never shown to the model (and never scanned, so
# they cannot reach an alert).
CREDENTIALS: frozenset[str] = frozenset({"headers", "authorization"})
# Keys whose value is read whole as one text (a schema or grammar: every key and string in it).
SCHEMAS: frozenset[str] = frozenset({"parameters", "schema", "input_schema", "json_schema", "definition"})
# Binary payloads the model sees as pixels or sound, not text: not inspected (docs/detection.md).
MEDIA = re.compile(r"(?:image|audio|video)/[A-Za-z0-9.+\-]+")
# Media types read as text when a data: URL carries them.
TEXT_MEDIA = re.compile(r"text/[A-Za-z0-9.+\-]+|application/(?:json|xml|x-yaml|yaml|x-ndjson|csv|"
                        r"javascript|x-sh|x-python|[A-Za-z0-9.\-]+\+(?:json|xml))")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_FETCHED_URL = re.compile(r"https?://[!#-~]{1,4096}")  # no spaces or controls: a URL, not a sentence
_DATA_KEYS = frozenset({"url", "image_url", "file_data", "file_url", "data"})

Out = list[TextItem]


_plain_keys: set[str] = set()  # keys already found plain (field names repeat in every request)
_CONTAINERS_OR_STR = (str, dict, list)


def _check_key(key: str, path: str) -> None:
    if not _PLAIN_KEY.fullmatch(key):
        raise Unreadable(f"field names must be plain identifiers here, got {key[:40]!r}",
                         path or key, code="invalid_field_name")
    if len(_plain_keys) < 4096:
        _plain_keys.add(key)


def walk(value: Any, role: str, path: str, out: Out) -> None:
    """Every string under `value` the model may read, in `role`. Labels that look like
    identifiers are skipped; a key that is not a plain identifier is refused (keys are not read
    as texts, so one that could carry a sentence must not pass unread)."""
    kind = type(value)
    if kind is str:
        if value:
            out.append(TextItem(value, role, path))
    elif kind is dict:
        for key, item in value.items():
            if key not in _plain_keys:
                _check_key(key, path)
            sub = f"{path}.{key}" if path else key
            if type(item) is str:
                if not item or key in OPAQUE or (key in LABELS and _IDENTIFIER.fullmatch(item)):
                    continue
                if key in _DATA_KEYS and item.startswith("data:"):
                    data_url_text(item, role, sub, out)
                elif key in _DATA_KEYS and _FETCHED_URL.fullmatch(item):
                    continue  # fetched by the provider as an image or file: the URL itself is not read
                elif key == "data" and path.endswith("input_audio"):
                    continue  # raw base64 sound
                else:
                    out.append(TextItem(item, role, sub))
            elif key in CREDENTIALS or key in OPAQUE:
                continue
            elif key in SCHEMAS and item is not None:  # a definition's schema is judged as a schema
                joined(item, "schema" if role == "tool_description" else role, sub, out)
            else:
                walk(item, role, sub, out)
    elif kind is list:
        for i, item in enumerate(value):
            walk(item, role, f"{path}[{i}]", out)


def joined(value: Any, role: str, path: str, out: Out) -> None:
    """A schema read whole: every key and string under it, one per line, as one text (one scan
    rather than one a description). Its path ends in JOINED: redaction rewrites the leaves."""
    parts: list[str] = []
    _leaves(value, parts)
    if parts:
        out.append(TextItem("\n".join(parts), role, path + JOINED))


def _leaves(value: Any, parts: list[str]) -> None:
    """Keys and strings in document order (a stack, not recursion: schemas can be wide)."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if item:
                parts.append(item)
        elif kind is dict:
            for key, sub in reversed(item.items()):
                if type(sub) in _CONTAINERS_OR_STR:
                    push(sub)
                push(key)
        elif kind is list:
            stack.extend(reversed(item))


def data_url_text(url: str, role: str, path: str, out: Out) -> None:
    """A data: URL: text media are decoded and read; images, audio and video are not text; any
    other type (PDF, office files, unknown binaries) cannot be read, so it is refused."""
    head, comma, payload = url[5:].partition(",")
    params = head.split(";")
    media = params[0].strip().lower() or "text/plain"
    if not comma:
        raise Unreadable("a data: URL without a ',' cannot be read", path)
    if MEDIA.fullmatch(media):
        return
    if not TEXT_MEDIA.fullmatch(media):
        raise Unreadable(f"content of type {media} cannot be inspected by the firewall; "
                         "send its text instead", path)
    try:
        raw = (binascii.a2b_base64(payload, strict_mode=True) if "base64" in params[1:]
               else urllib.parse.unquote_to_bytes(payload))
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unreadable(f"the {media} data: URL is not valid base64 UTF-8 text", path) from None
    if text:
        out.append(TextItem(text, role, path + DECODED))


def file_data_text(value: Any, role: str, path: str, out: Out) -> None:
    """A file part's `file_data`: a data: URL, or bare base64 that must decode to UTF-8 text."""
    if type(value) is not str or not value:
        walk(value, role, path, out)
    elif value.startswith("data:"):
        data_url_text(value, role, path, out)
    else:
        data_url_text("data:text/plain;base64," + value, role, path, out)


# -- chat completions -------------------------------------------------------------------------

def message_role(role: Any) -> str:
    """The role a message's text is judged in; an unknown role is judged as a user's text."""
    if role in ("user", "system", "developer", "assistant", "tool"):
        return role
    return "tool" if role == "function" else "user"


def content_texts(content: Any, role: str, path: str, out: Out) -> None:
    """A message's content: a string or a list of parts of any type."""
    if type(content) is str:
        if content:
            out.append(TextItem(content, role, path))
        return
    if type(content) is not list:
        walk(content, role, path, out)
        return
    for j, part in enumerate(content):
        sub = f"{path}[{j}]"
        if type(part) is dict and type(part.get("file")) is dict:  # chat file part
            part = dict(part)
            file = dict(part.pop("file"))
            data = file.pop("file_data", None)
            if data is not None:
                file_data_text(data, role, f"{sub}.file.file_data", out)
            walk(file, role, f"{sub}.file", out)
        elif type(part) is dict and "file_data" in part:  # Responses API input_file
            part = dict(part)
            file_data_text(part.pop("file_data"), role, f"{sub}.file_data", out)
        walk(part, role, sub, out)


def _messages(messages: Any, out: Out) -> None:
    for i, message in enumerate(messages):
        role = message_role(message.get("role"))
        path = f"messages[{i}]"
        for key, value in message.items():
            if key == "content":
                if type(value) is str:  # the usual message: no call for it (conversations are long)
                    if value:
                        out.append(TextItem(value, role, f"{path}.content"))
                elif value is not None:
                    content_texts(value, role, f"{path}.content", out)
            elif key == "role" or value is None:
                continue
            elif key in ("tool_calls", "function_call"):  # arguments and names the model wrote
                walk(value, "tool_call", f"{path}.{key}", out)
            else:  # name, refusal, tool_call_id, audio, and whatever else a message carries
                walk({key: value}, role, path, out)


def _prediction(value: Any, out: Out) -> None:
    if type(value) is dict and "content" in value:
        rest = dict(value)
        content_texts(rest.pop("content"), "assistant", "prediction.content", out)
        walk(rest, "assistant", "prediction", out)
    else:
        walk(value, "assistant", "prediction", out)


def _definitions(value: Any, field: str, out: Out) -> None:
    """Tool and function definitions, output formats, tool choices: written by the developer for
    the model to follow, judged as tool descriptions."""
    walk(value, "tool_description", field, out)


# -- Responses API ----------------------------------------------------------------------------

# The role an input item's text is judged in, by its type (a message item has a `role`).
_ITEM_ROLES: dict[str, str] = {
    "function_call": "tool_call", "custom_tool_call": "tool_call", "computer_call": "tool_call",
    "local_shell_call": "tool_call", "shell_call": "tool_call", "apply_patch_call": "tool_call",
    "mcp_call": "tool_call", "mcp_approval_request": "tool_call", "web_search_call": "tool_call",
    "file_search_call": "tool", "code_interpreter_call": "tool_call", "image_generation_call": "tool_call",
    "function_call_output": "tool", "custom_tool_call_output": "tool", "computer_call_output": "tool",
    "local_shell_call_output": "tool", "shell_call_output": "tool", "apply_patch_call_output": "tool",
    "mcp_list_tools": "tool_description", "mcp_approval_response": "user",
    "reasoning": "assistant", "compaction": "assistant", "item_reference": "user",
}


def _input_items(value: Any, out: Out) -> None:
    if type(value) is str:
        if value:
            out.append(TextItem(value, "input", "input"))
        return
    for i, item in enumerate(value):
        path = f"input[{i}]"
        if type(item) is not dict:
            walk(item, "input", path, out)
            continue
        kind = item.get("type")
        if "role" in item and kind in (None, "message"):
            role = message_role(item.get("role"))
            rest = dict(item)
            content_texts(rest.pop("content", None), role, f"{path}.content", out)
            walk(rest, role, path, out)
        else:
            role = _ITEM_ROLES.get(kind, "input") if type(kind) is str else "input"
            walk(item, role, path, out)


def _responses_prompt(value: Any, out: Out) -> None:
    """A stored prompt template: its variables are text the model reads."""
    if type(value) is dict and type(value.get("variables")) is dict:
        rest = dict(value)
        for name, var in rest.pop("variables").items():
            content_texts(var if type(var) in (str, list) else [var], "input", f"prompt.variables.{name}", out)
        walk(rest, "input", "prompt", out)
    else:
        walk(value, "input", "prompt", out)


# -- the endpoints ----------------------------------------------------------------------------

Handler = Callable[[Any, Out], None]


def _as(role: str, field: str) -> Handler:
    return lambda value, out: walk(value, role, field, out)


def _is_tokens(value: Any) -> bool:
    """Token ids (a list of ints), the tokenised form of a text."""
    return type(value) is int or (type(value) is list and all(type(t) is int for t in value))


def _string_items(role: str, field: str, *, tokens_read: bool) -> Handler:
    """A field holding a string or a list of them, or token ids. `tokens_read`: the model acts
    on what the tokens say (a completion prompt), so token ids are refused, since the firewall
    cannot read them; otherwise (embeddings: the text is only encoded, never obeyed, and clients
    such as LangChain send token ids by default) they pass."""
    def read(value: Any, out: Out) -> None:
        if type(value) is str:
            if value:
                out.append(TextItem(value, role, f"{field}[0]"))
            return
        if tokens_read and not (type(value) is list and all(type(v) is str for v in value)):
            # anything but text (token ids, as ints or as floats a lenient server reads as ints)
            raise Unreadable("Prompts written as token ids cannot be inspected; send the text instead.", field)
        for i, item in enumerate(value if type(value) is list else [value]):
            if type(item) is str:
                if item:
                    out.append(TextItem(item, role, f"{field}[{i}]"))
            elif not _is_tokens(item):
                walk(item, role, f"{field}[{i}]", out)
    return read


def _text_only(role: str, field: str) -> Handler:
    """A field the model reads that must be a string: anything else cannot be inspected."""
    def read(value: Any, out: Out) -> None:
        if type(value) is not str:
            raise Unreadable(f"'{field}' must be a string to be inspected.", field)
        if value:
            out.append(TextItem(value, role, field))
    return read


def _tools(field: str) -> Handler:
    return lambda value, out: _definitions(value, field, out)


FIELDS: dict[str, dict[str, Handler]] = {
    "chat/completions": {
        "messages": _messages,
        "tools": _tools("tools"), "functions": _tools("functions"),
        "tool_choice": _tools("tool_choice"), "function_call": _tools("function_call"),
        "response_format": _tools("response_format"),
        "prediction": _prediction,
    },
    "completions": {"prompt": _string_items("prompt", "prompt", tokens_read=True),
                    "suffix": _text_only("prompt", "suffix")},
    "embeddings": {"input": _string_items("embedding", "input", tokens_read=False)},
    "responses": {
        "instructions": _as("instructions", "instructions"),
        "input": _input_items,
        "tools": _tools("tools"), "tool_choice": _tools("tool_choice"),
        "text": _tools("text"),
        "prompt": _responses_prompt,
    },
}


def model_texts(endpoint: str, body: dict[str, Any]) -> list[TextItem]:
    """Every text the model would read in a request body, with the role it stands in.

    Known fields by their shape; fields in NOT_READ skipped; every other field walked as user
    text. An endpoint without a known shape (a policy's passthrough) is walked whole as user
    text. Raises Unreadable for content that cannot be read."""
    out: Out = []
    fields = FIELDS.get(endpoint)
    if fields is None:
        walk(body, "user", "", out)
        return out
    for key, value in body.items():
        if value is None:
            continue
        handler = fields.get(key)
        if handler is not None:
            handler(value, out)
        elif key not in NOT_READ:
            walk({key: value}, "user", "", out)
    return out


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to every string under it (keys kept): how a joined text's
    leaves are rewritten, since the joined text itself stands nowhere in the body."""
    if type(value) is str:
        return fn(value)
    if type(value) is dict:
        return {k: map_strings(v, fn) for k, v in value.items()}
    if type(value) is list:
        return [map_strings(v, fn) for v in value]
    return value
