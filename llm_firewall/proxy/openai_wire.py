"""The OpenAI wire format: strict body parsing, shape checks, text extraction, error bodies.

Everything here is pure (no aiohttp) so that the CLI scanner and the proxy read bodies the same
way. A body the firewall cannot read with certainty is refused, never guessed at: an attacker
must not find a shape that the firewall skips but the model still reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from llm_firewall.domain import TextItem


class WireError(ValueError):
    """A request the firewall refuses to read; carries the OpenAI-style status, code and param."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request_error",
                 param: str | None = None, err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.err_type = err_type


def error_body(message: str, *, code: str, err_type: str = "invalid_request_error",
               param: str | None = None) -> bytes:
    """An OpenAI-shaped error object; the SDKs turn it into the matching exception."""
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": param, "code": code}})


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireError(f"duplicate key {key!r} in JSON body", code="invalid_json", param=key)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise WireError(f"{name} is not valid JSON", code="invalid_json")


_STRICT = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _depth_ok(raw: bytes, max_depth: int) -> bool:
    """Bracket depth without parsing: cheap, and stops a 100,000-deep body before any recursion."""
    depth = 0
    in_string = False
    escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


# Where a key may end: a quote, optional whitespace, a colon. Every key's closing quote is one;
# an escaped quote or a string that starts with a colon may be one too, which only ever adds.
_KEY_END = re.compile(rb'"[ \t\n\r]*:')


def _key_count(value: Any) -> int:
    """Keys in every object of a parsed body."""
    count, todo = 0, [value]
    while todo:
        item = todo.pop()
        if type(item) is dict:
            count += len(item)
            todo.extend(item.values())
        elif type(item) is list:
            todo.extend(item)
    return count


def parse_json_body(raw: bytes, *, max_depth: int) -> dict[str, Any]:
    """Parse a request body strictly: UTF-8, no NaN/Infinity, no duplicate keys, no lone surrogates.

    orjson validates UTF-8, surrogates and numbers fast, but silently collapses duplicate keys
    (last one wins, while some upstreams take the first). A repeated key leaves fewer keys in
    the parsed body than the raw text has key ends, so only then (or when a string fakes a key
    end) does the stdlib decoder, which refuses duplicates, read the body again.
    """
    if not raw.strip():
        raise WireError("request body is empty; a JSON object is required", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > max_depth and not _depth_ok(raw, max_depth):
        raise WireError(f"JSON nesting deeper than {max_depth}", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"body is not valid JSON: {exc}", code="invalid_json") from None
    if len(_KEY_END.findall(raw)) != _key_count(body):  # a key may be repeated: ask the strict decoder
        try:
            body = _STRICT.decode(raw.decode("utf-8"))
        except WireError:
            raise
        except (ValueError, RecursionError) as exc:
            raise WireError(f"body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise WireError("the JSON body must be an object", code="invalid_json")
    return body


_STREAM_ENDPOINTS = {"chat/completions", "completions", "responses"}


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    endpoint: str  # path after /v1/, e.g. "chat/completions"
    body: dict[str, Any]
    stream: bool
    model: str | None


def _message_problem(message: Any) -> tuple[str, str] | None:
    """(field suffix, what is wrong) for a chat message of the wrong shape, else None."""
    if not isinstance(message, dict):
        return "", "must be an object"
    if not isinstance(message.get("role"), str):
        return ".role", "must be a string"
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        return ".content", "must be a string or a list of parts"
    return None


def _expect(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise WireError(message, param=param, code="invalid_type")


def validate_shape(endpoint: str, body: dict[str, Any], *, max_messages: int) -> ParsedRequest:
    """Type-check the fields the firewall inspects; a wrong type is a 400, not a bypass."""
    stream = body.get("stream", False)
    _expect(isinstance(stream, bool), "'stream' must be a boolean", "stream")
    model = body.get("model")
    _expect(model is None or isinstance(model, str), "'model' must be a string", "model")
    if endpoint == "chat/completions":
        messages = body.get("messages")
        _expect(isinstance(messages, list), "'messages' must be a list", "messages")
        if len(messages) > max_messages:
            raise WireError(f"too many messages ({len(messages)} > {max_messages})", param="messages",
                            code="too_many_messages")
        for i, message in enumerate(messages):
            problem = _message_problem(message)
            if problem is not None:  # formatted only now: this loop runs for every message of every request
                field, text = problem
                raise WireError(f"messages[{i}]{field} {text}", param=f"messages[{i}]{field}", code="invalid_type")
        tools = body.get("tools")
        _expect(tools is None or isinstance(tools, list), "'tools' must be a list", "tools")
    elif endpoint == "completions":
        prompt = body.get("prompt")
        _expect(prompt is None or isinstance(prompt, (str, list)), "'prompt' must be a string or list", "prompt")
    elif endpoint == "embeddings":
        inp = body.get("input")
        _expect(isinstance(inp, (str, list)), "'input' must be a string or a list", "input")
    elif endpoint == "responses":
        inp = body.get("input")
        _expect(inp is None or isinstance(inp, (str, list)), "'input' must be a string or a list", "input")
        ins = body.get("instructions")
        _expect(ins is None or isinstance(ins, str), "'instructions' must be a string", "instructions")
    return ParsedRequest(endpoint, body, bool(stream) and endpoint in _STREAM_ENDPOINTS, model)


def _content_texts(content: Any, role: str, path: str) -> Iterator[TextItem]:
    if isinstance(content, str):
        if content:
            yield TextItem(content, role, path)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, str):
                yield TextItem(part, role, f"{path}[{j}]")
            elif isinstance(part, dict):
                for key in ("text", "input_text", "output_text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str) and value:
                        yield TextItem(value, role, f"{path}[{j}].{key}")


def _message_role(role: str) -> str:
    return role if role in {"user", "system", "developer", "assistant", "tool"} else (
        "tool" if role == "function" else "user")


def _tool_call_texts(calls: Any, path: str) -> Iterator[TextItem]:
    if not isinstance(calls, list):
        return
    for k, call in enumerate(calls):
        if isinstance(call, dict):
            fn = call.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str) and fn["arguments"]:
                yield TextItem(fn["arguments"], "tool_call", f"{path}[{k}].function.arguments")


def _tool_descriptions(tools: Any) -> Iterator[TextItem]:
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        desc = fn.get("description")
        if isinstance(desc, str) and desc:
            yield TextItem(desc, "tool_description", f"tools[{i}].description")
        params = fn.get("parameters")
        if isinstance(params, dict):
            blob = orjson.dumps(params).decode()
            if "description" in blob:
                yield TextItem(blob, "tool_description", f"tools[{i}].parameters")


def _string_items(value: Any, role: str, field: str) -> Iterator[TextItem]:
    """The non-empty strings of a field that holds a string or a list of them (token lists skipped)."""
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        if isinstance(item, str) and item:
            yield TextItem(item, role, f"{field}[{i}]")


def request_texts(parsed: ParsedRequest) -> list[TextItem]:
    """Every text the model would read, with the role it came from."""
    body, out = parsed.body, []
    ep = parsed.endpoint
    if ep == "chat/completions":
        for i, message in enumerate(body.get("messages") or []):
            role = _message_role(message.get("role", "user"))
            content = message.get("content")
            if type(content) is str:  # the usual message: no generator for it (conversations are long)
                if content:
                    out.append(TextItem(content, role, f"messages[{i}].content"))
            elif content is not None:
                out.extend(_content_texts(content, role, f"messages[{i}].content"))
            if "tool_calls" in message:
                out.extend(_tool_call_texts(message["tool_calls"], f"messages[{i}].tool_calls"))
            fc = message.get("function_call")
            if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
                out.append(TextItem(fc["arguments"], "tool_call", f"messages[{i}].function_call.arguments"))
        for field in ("tools", "functions"):
            if field in body:
                out.extend(_tool_descriptions(body[field]))
    elif ep == "completions":
        out.extend(_string_items(body.get("prompt"), "prompt", "prompt"))
        suffix = body.get("suffix")
        if isinstance(suffix, str) and suffix:
            out.append(TextItem(suffix, "prompt", "suffix"))
    elif ep == "embeddings":
        out.extend(_string_items(body.get("input"), "embedding", "input"))
    elif ep == "responses":
        ins = body.get("instructions")
        if isinstance(ins, str) and ins:
            out.append(TextItem(ins, "instructions", "instructions"))
        inp = body.get("input")
        if isinstance(inp, str):
            out.append(TextItem(inp, "input", "input"))
        elif isinstance(inp, list):
            for i, item in enumerate(inp):
                if isinstance(item, str):
                    out.append(TextItem(item, "input", f"input[{i}]"))
                elif isinstance(item, dict):
                    kind = item.get("type")
                    if kind == "function_call_output":
                        output = item.get("output")
                        if isinstance(output, str):
                            out.append(TextItem(output, "tool", f"input[{i}].output"))
                    elif kind == "function_call" and isinstance(item.get("arguments"), str):
                        out.append(TextItem(item["arguments"], "tool_call", f"input[{i}].arguments"))
                    else:
                        role = _message_role(item.get("role", "user"))
                        out.extend(_content_texts(item.get("content"), role, f"input[{i}].content"))
        out.extend(_tool_descriptions(body.get("tools")))
    else:  # a policy's passthrough endpoint: no known shape, so every string is text the model may read
        out.extend(_every_string(body, "user", ""))  # client-written: judged as user text
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _every_string(value: Any, role: str, path: str) -> Iterator[TextItem]:
    """Every non-empty string value in a JSON value, with its path. Keys are not texts to
    inspect: a key that is not a plain identifier is refused (fail closed), not forwarded."""
    if isinstance(value, str):
        if value:
            yield TextItem(value, role, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _PLAIN_KEY.fullmatch(key):
                raise WireError(f"field names must be plain identifiers on this endpoint, got {key[:40]!r}",
                                param=path or None, code="invalid_field_name")
            yield from _every_string(item, role, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _every_string(item, role, f"{path}[{i}]")


def response_texts(endpoint: str, body: Any) -> list[TextItem]:
    """Texts of a non-streamed answer: message content, refusals, tool-call arguments."""
    out: list[TextItem] = []
    if not isinstance(body, dict):
        return out
    if endpoint == "responses":
        for i, item in enumerate(body.get("output") or []):
            if isinstance(item, dict):
                out.extend(_content_texts(item.get("content"), "response", f"output[{i}].content"))
                if isinstance(item.get("arguments"), str):
                    out.append(TextItem(item["arguments"], "tool_call", f"output[{i}].arguments"))
        return out
    for i, choice in enumerate(body.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            out.extend(_content_texts(message.get("content"), "response", f"choices[{i}].message.content"))
            out.extend(_tool_call_texts(message.get("tool_calls"), f"choices[{i}].message.tool_calls"))
        text = choice.get("text")
        if isinstance(text, str) and text:
            out.append(TextItem(text, "response", f"choices[{i}].text"))
    return out
