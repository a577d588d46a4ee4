"""The OpenAI wire format: strict body parsing, shape checks, text extraction, error bodies.

Everything here is pure (no aiohttp) so that the CLI scanner and the proxy read bodies the same
way. A body the firewall cannot read with certainty is refused, never guessed at: an attacker
must not find a shape that the firewall skips but the model still reads.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from llm_firewall.domain import TextItem
from llm_firewall.proxy import strict_json
from llm_firewall.proxy.request_fields import DECODED, JOINED, Unreadable, map_strings, model_texts


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


def parse_json_body(raw: bytes, *, max_depth: int) -> dict[str, Any]:
    """Parse a request body strictly: UTF-8, no NaN/Infinity, no duplicate keys, no lone surrogates.

    orjson validates UTF-8, surrogates and numbers fast; `strict_json.loads` adds the check for
    repeated keys (some upstreams take the first value, orjson the last).
    """
    if not raw.strip():
        raise WireError("request body is empty; a JSON object is required", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > max_depth and not _depth_ok(raw, max_depth):
        raise WireError(f"JSON nesting deeper than {max_depth}", code="invalid_json")
    try:
        body = strict_json.loads(raw)
    except strict_json.RepeatedKeyError as exc:
        raise WireError(f"duplicate key {exc.key!r} in JSON body", code="invalid_json", param=exc.key) from None
    except (orjson.JSONDecodeError, RecursionError) as exc:
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
        if not isinstance(messages, list):
            raise WireError("'messages' must be a list", param="messages", code="invalid_type")
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


def request_texts(parsed: ParsedRequest) -> list[TextItem]:
    """Every text the model would read, in every role and field, with the role it came from
    (request_fields.model_texts). Content the firewall cannot read is a 400, never forwarded."""
    try:
        return model_texts(parsed.endpoint, parsed.body)
    except Unreadable as exc:
        raise WireError(exc.message, param=exc.param, code=exc.code) from None


# Answer strings that are opaque payloads (images, audio, vectors, encrypted reasoning): a client
# decodes them as bytes, never reads them as text. They are checked only for secrets written as
# they are (one text at OPAQUE_TEXT): base64 of an image matches personal-data rules by chance.
OPAQUE = frozenset({"b64_json", "embedding", "encrypted_content", "partial_image_b64",
                    "obfuscation"})  # (random padding some APIs add to stream events)
OPAQUE_TEXT = "#opaque"
# Answer strings that label rather than say (ids, enums, model names). They are scanned too, but
# joined into one text: one scan per answer rather than ~25 µs for each id. Object keys are read
# the same way: a key is text a client receives as much as a value.
LABELS = frozenset({"id", "object", "type", "role", "status", "finish_reason", "model", "system_fingerprint",
                    "service_tier", "call_id", "item_id", "created_at", "expires_at", "previous_response_id",
                    "tool_choice", "truncation", "effort", "verbosity"})
# Field names of the OpenAI answer shapes: a key among them is no text of the upstream's own.
KNOWN_KEYS = LABELS | OPAQUE | frozenset({
    "choices", "index", "message", "delta", "content", "refusal", "reasoning", "reasoning_content", "logprobs",
    "tool_calls", "function", "name", "arguments", "function_call", "audio", "data", "transcript", "annotations",
    "usage", "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "cached_tokens",
    "completion_tokens_details", "reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
    "rejected_prediction_tokens", "created", "text", "token", "tokens", "bytes", "top_logprobs", "text_offset",
    "token_logprobs", "output", "output_text", "summary", "input_tokens", "output_tokens", "input_tokens_details",
    "output_tokens_details", "instructions", "error", "code", "param", "incomplete_details", "reason",
    "parallel_tool_calls", "tools", "temperature", "top_p", "max_output_tokens", "metadata", "user", "store",
    "background", "url", "title", "start_index", "end_index", "url_citation", "file_id", "filename", "results",
    "queries", "input", "response", "sequence_number", "item", "output_index", "content_index", "summary_index"})
# The path of the joined labels; a path ending in JOINED names a field whose text was joined from
# pieces (logprob tokens; in requests, schemas and data: URLs): it is removed or rewritten leaf by leaf.
IDENTIFIERS = "#labels"
_TOOL_KEYS = frozenset({"tool_calls", "function_call", "arguments", "input", "code"})


def logprob_texts(logprobs: Any, path: str) -> list[TextItem]:
    """The text logprobs spell out, token by token: a secret can hide there as well as in
    `content`. Chat: `content`/`refusal` lists of {token, top_logprobs}; legacy completions:
    `tokens` and `top_logprobs` (one {token: logprob} per position). Each alternative rank is
    joined too, since a client can read the text along any of them."""
    out: list[TextItem] = []
    _logprobs_into(logprobs, path, out)
    return out


def _logprobs_into(logprobs: Any, path: str, out: list[TextItem], labels: list[str] | None = None) -> None:
    if not isinstance(logprobs, dict):
        if logprobs is not None:
            _walk_into(logprobs, path, "response", labels, frozenset(), out)
        return
    ranks: dict[int, list[str]] = {}
    for field in ("content", "refusal"):
        tokens = logprobs.get(field)
        if isinstance(tokens, list):
            ranks.setdefault(-1, []).extend(t["token"] for t in tokens
                                            if isinstance(t, dict) and isinstance(t.get("token"), str))
            for t in tokens:
                for r, alt in enumerate(t.get("top_logprobs") or () if isinstance(t, dict) else ()):
                    if isinstance(alt, dict) and isinstance(alt.get("token"), str):
                        ranks.setdefault(r, []).append(alt["token"])
    legacy = logprobs.get("tokens")
    if isinstance(legacy, list):
        ranks.setdefault(-1, []).extend(t for t in legacy if isinstance(t, str))
    for position in logprobs.get("top_logprobs") or () if isinstance(logprobs.get("top_logprobs"), list) else ():
        if isinstance(position, dict):
            for r, token in enumerate(position):
                ranks.setdefault(r, []).append(token)
    for r in sorted(ranks):
        text = "".join(ranks[r])
        if text:
            out.append(TextItem(text, "response", path + JOINED))
    _walk_into(logprobs, path, "response", labels, _TOKENS, out)  # anything else put there


def keys_into(value: Any, labels: list[str]) -> None:
    """Every object key under `value`, appended to `labels`."""
    todo = [value]
    while todo:
        item = todo.pop()
        if type(item) is dict:
            labels.extend(item)
            todo.extend(v for v in item.values() if type(v) is dict or type(v) is list)
        elif type(item) is list:
            todo.extend(v for v in item if type(v) is dict or type(v) is list)


_TOKENS = frozenset({"token", "tokens"})  # read joined above, not one scan a token
_SCALARS = (int, float, bool, type(None))


def walk_answer(value: Any, path: str = "", role: str = "response", labels: list[str] | None = None,
                skip: frozenset[str] = frozenset()) -> list[TextItem]:
    """Every string under `value` with its path: unknown shapes are read whole (fail closed).
    Labels and object keys go to `labels` when given (else labels are texts too and keys are not
    read); opaque payloads are texts at OPAQUE_TEXT; strings (or lists of them) under a
    key in `skip` are left out."""
    out: list[TextItem] = []
    _walk_into(value, path, role, labels, skip, out)
    return out


def _walk_into(value: Any, path: str, role: str, labels: list[str] | None, skip: frozenset[str],
               out: list[TextItem]) -> None:
    # Appends to one list rather than yielding: a generator per level cost ~6x on every answer.
    kind = type(value)
    if kind is str:
        if value:
            out.append(TextItem(value, role, path))
    elif kind is dict:
        if labels is not None and not KNOWN_KEYS.issuperset(value):
            labels.extend(key for key in value if key not in KNOWN_KEYS)
        for key, item in value.items():
            item_kind = type(item)
            if item_kind in _SCALARS:
                continue
            if item_kind is str:
                if not item or (key in skip):
                    continue
                if key in LABELS and labels is not None:
                    labels.append(item)
                elif key in OPAQUE or (key == "data" and path.endswith("audio")):
                    out.append(TextItem(item, role, OPAQUE_TEXT))
                else:
                    out.append(TextItem(item, role, f"{path}.{key}" if path else key))
                continue
            if key in skip and item_kind is list and all(type(x) is str for x in item):
                continue
            sub = f"{path}.{key}" if path else key
            if key == "logprobs":
                _logprobs_into(item, sub, out, labels)
            else:
                _walk_into(item, sub, "tool_call" if key in _TOOL_KEYS else role, labels, skip, out)
    elif kind is list:
        for i, item in enumerate(value):
            if type(item) not in _SCALARS:
                _walk_into(item, f"{path}[{i}]", role, labels, skip, out)


def response_texts(endpoint: str, body: Any) -> list[TextItem]:
    """Every text of a non-streamed answer a client or a model downstream reads.

    Not a list of known fields: every string of the answer is read (chat `content`, `refusal`,
    `reasoning_content`/`reasoning`, tool-call names and arguments, `function_call`, audio
    transcripts, annotations; completions `text`; Responses API output items of every type and
    `output_text`; error bodies; and whatever a new API version or a hostile upstream adds), except
    opaque base64/vector payloads. Logprob tokens are joined into the text they spell; labels
    (ids, enums, model names) are joined into one text at IDENTIFIERS. `endpoint` is kept for the
    callers' symmetry with `request_texts`: the answer's own shape decides. Object keys join the
    labels; opaque payloads come one by one at OPAQUE_TEXT; the texts joined at TEXTS.
    """
    labels: list[str] = []
    out = walk_answer(body, "", "response", labels)
    out += joined_texts(body, out)
    if labels:
        out.append(TextItem("\n".join(dict.fromkeys(labels)), "response", IDENTIFIERS))
    return out


TEXTS = "#texts"  # the path of an answer's texts joined as a reader joins them (see joined_texts)


def joined_texts(body: Any, items: list[TextItem]) -> list[TextItem]:
    """An answer's texts joined with nothing between them, as a reader joins them: a key cut in
    two across fields, content parts, tool calls or choices reads whole there (see joined_orders)."""
    return [TextItem("".join(item.text for item in order), "response", TEXTS) for order in joined_orders(body, items)]


def joined_orders(body: Any, items: list[TextItem]) -> list[list[TextItem]]:
    """The orders a reader may join an answer's texts in: the answer's own, and also the choices'
    `index` order when the list is not in it. Labels, opaque payloads and logprob tokens (joined
    on their own) are left out; none for fewer than two texts."""
    if len(items) < 2:
        return []
    texts = [item for item in items if not item.path.startswith("#") and not item.path.endswith(JOINED)]
    if len(texts) < 2:
        return []
    out = [texts]
    choices = body.get("choices") if isinstance(body, dict) else None
    if isinstance(choices, list):
        rank = [c.get("index", i) if isinstance(c, dict) else i for i, c in enumerate(choices)]
        if all(type(r) is int for r in rank) and rank != sorted(rank):

            def order(item: TextItem) -> int:
                at = item.path[len("choices["):item.path.find("]")] if item.path.startswith("choices[") else ""
                return rank[int(at)] if at.isdigit() else -1

            out.append(sorted(texts, key=order))
    return out


_PATH_TOKENS = re.compile(r"[^.\[\]]+|\[\d+\]")


def set_path(obj: Any, path: str, value: Any) -> None:
    """Assign to a dotted/indexed path such as ``messages[2].content[0].text``."""
    tokens = _PATH_TOKENS.findall(path)
    target = obj
    for tok in tokens[:-1]:
        target = target[int(tok[1:-1])] if tok.startswith("[") else target[tok]
    last = tokens[-1]
    if last.startswith("["):
        target[int(last[1:-1])] = value
    else:
        target[last] = value


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted/indexed path (see set_path)."""
    for tok in _PATH_TOKENS.findall(path):
        obj = obj[int(tok[1:-1])] if tok.startswith("[") else obj[tok]
    return obj


def rewrite_request_text(body: dict[str, Any], item: TextItem, mask: Callable[[str], str]) -> None:
    """Put the masked form of a request text back where it stood. A joined or decoded text stands
    nowhere as such: a schema's strings are masked one by one, a decoded file's text is encoded
    again (as a data: URL of the same type, or bare base64 where it was bare)."""
    if item.path.endswith(DECODED):
        path = item.path[:-len(DECODED)]
        masked = mask(item.text)
        if masked != item.text:
            value = get_path(body, path)
            encoded = base64.b64encode(masked.encode()).decode()
            if value.startswith("data:"):
                encoded = f"{value.partition(',')[0].replace(';base64', '')};base64,{encoded}"
            set_path(body, path, encoded)
    elif item.path.endswith(JOINED):
        path = item.path[:-len(JOINED)]
        set_path(body, path, map_strings(get_path(body, path), mask))
    else:
        masked = mask(item.text)
        if masked != item.text:
            set_path(body, item.path, masked)
