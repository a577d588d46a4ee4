"""A LiteLLM guardrail that asks llm-firewall (`POST /api/guard`) about every request and answer.

For teams that keep LiteLLM as their gateway: the firewall inspects and decides, LiteLLM
forwards. A request the firewall refuses never reaches the model; an answer it withholds never
reaches the client; texts it masks are replaced. The firewall also enforces its policy for the
identity named here (strikes, suspensions, rate limits), so repeat offenders are refused by
LiteLLM too. With `fail_open: false` (the default) a firewall that cannot be reached refuses the
call: a guardrail nobody consulted is no guardrail. Calls the guard cannot read (images, audio,
Anthropic messages) are refused unless `other_calls: allow`.

Configure it in LiteLLM's config.yaml (see config.yaml beside this file):
    api_base  the firewall's URL (default: $LLM_FIREWALL_URL, else http://127.0.0.1:8080)
    api_key   LLM_FIREWALL_GUARD_TOKEN or the admin token (default: $LLM_FIREWALL_GUARD_TOKEN)
"""

from __future__ import annotations

import os
from typing import Any, AsyncIterator

import httpx
from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail

# LiteLLM call types -> the firewall's endpoint names; others are not inspected by the guard.
_ENDPOINTS = {"completion": "chat/completions", "acompletion": "chat/completions",
              "text_completion": "completions", "atext_completion": "completions",
              "embedding": "embeddings", "aembedding": "embeddings",
              "responses": "responses", "aresponses": "responses"}
# Fields of LiteLLM's request data that are the OpenAI body (the rest is LiteLLM's own).
_BODY_FIELDS = ("model", "messages", "tools", "functions", "prompt", "suffix", "input", "instructions",
                "stream")


class FirewallGuardrail(CustomGuardrail):
    """Pre-call: the request's verdict; post-call: the answer's. Refusals keep the firewall's
    status and OpenAI error code, so clients see what they would see behind the firewall itself."""

    def __init__(self, api_base: str | None = None, api_key: str | None = None, fail_open: bool = False,
                 other_calls: str = "refuse", timeout_s: float = 10.0, **kwargs: Any) -> None:
        if other_calls not in ("refuse", "allow"):
            raise ValueError("other_calls must be 'refuse' or 'allow'")
        self.api_base = (api_base or os.environ.get("LLM_FIREWALL_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.api_key = api_key or os.environ.get("LLM_FIREWALL_GUARD_TOKEN")
        self.fail_open = fail_open
        self.other_calls = other_calls
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        super().__init__(**kwargs)

    # -- LiteLLM hooks ---------------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        endpoint = _ENDPOINTS.get(getattr(call_type, "value", call_type))
        if endpoint is None:  # images, audio, Anthropic messages...: nothing the guard reads
            if self.other_calls == "allow":
                return data
            raise HTTPException(status_code=400, detail={"error": {
                "message": f"The firewall does not inspect {call_type} calls; they are refused.",
                "type": "invalid_request_error", "param": None, "code": "uninspected_call"}})
        body = {k: data[k] for k in _BODY_FIELDS if k in data}
        verdict = await self.guard("request", endpoint, body, self.identity(user_api_key_dict, data))
        if verdict is None:
            return data
        self.refuse_unless_allowed(verdict)
        if verdict["decision"] == "redact":  # forward the firewall's masked texts instead
            data.update({k: v for k, v in verdict["body"].items() if k in _BODY_FIELDS})
        return data

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        answer = response.model_dump() if hasattr(response, "model_dump") else response
        if not isinstance(answer, dict):
            return response
        endpoint = "responses" if answer.get("object") == "response" else "chat/completions"
        verdict = await self.guard("response", endpoint, answer, self.identity(user_api_key_dict, data))
        if verdict is None:
            return response
        self.refuse_unless_allowed(verdict)
        if verdict["decision"] == "redact" and not hasattr(response, "choices"):
            raise _withheld()  # masked texts only fit back into chat answers here
        if verdict["decision"] == "redact":
            for choice, judged in zip(response.choices, verdict["body"].get("choices") or []):
                message = judged.get("message") or {}
                choice.message.content = message.get("content")
                if not message.get("tool_calls"):
                    choice.message.tool_calls = None
                choice.finish_reason = judged.get("finish_reason") or choice.finish_reason
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any,
                                                      request_data: dict) -> AsyncIterator[Any]:
        """A streamed answer is held whole, judged as one answer, then released (masked, or
        refused): the guard sees whole answers only. Behind the firewall's own proxy a stream is
        checked as it flows, holding back only what could still be the start of a secret."""
        chunks = [chunk async for chunk in response]
        answer = {"object": "chat.completion", "choices": [
            {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for index, text in _stream_texts(chunks).items()]}
        who = self.identity(user_api_key_dict, request_data)
        verdict = await self.guard("response", "chat/completions", answer, who)
        if verdict is not None:
            self.refuse_unless_allowed(verdict)
            if verdict["decision"] == "redact" and not all(hasattr(c, "choices") for c in chunks):
                raise _withheld()  # Responses API events: masked texts only fit back into chat chunks
            if verdict["decision"] == "redact":
                _mask_stream(chunks, verdict["body"])
        for chunk in chunks:
            yield chunk

    # -- the firewall ----------------------------------------------------------------------------
    @staticmethod
    def identity(user_api_key_dict: Any, data: dict) -> dict[str, str]:
        """Who the firewall enforces against: the end user (the OpenAI `user` field), else the
        LiteLLM user or key alias; the session LiteLLM tracks; the client address it saw (behind
        a load balancer, set LiteLLM's `general_settings.use_x_forwarded_for`)."""
        metadata = data.get("metadata") or data.get("litellm_metadata") or {}
        user = (data.get("user") or getattr(user_api_key_dict, "end_user_id", None)
                or getattr(user_api_key_dict, "user_id", None) or getattr(user_api_key_dict, "key_alias", None))
        session = metadata.get("session_id") or data.get("litellm_session_id")
        ip = (metadata.get("requester_ip_address") or "").split(",")[0].strip()
        who = {"user": user, "session": session, "ip": ip}
        return {k: str(v) for k, v in who.items() if v}

    async def guard(self, kind: str, endpoint: str, body: dict, identity: dict[str, str]) -> dict | None:
        """The firewall's verdict; None when it could not be asked and `fail_open` lets the call on."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            resp = await self._client.post(f"{self.api_base}/api/guard", headers=headers, json={
                "kind": kind, "endpoint": endpoint, "body": body, "identity": identity})
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self.fail_open:
                return None
            raise HTTPException(status_code=503, detail={"error": {
                "message": f"The firewall could not be consulted ({type(exc).__name__}).",
                "type": "server_error", "param": None, "code": "firewall_unavailable"}}) from None

    @staticmethod
    def refuse_unless_allowed(verdict: dict) -> None:
        """Raise the firewall's own refusal (status, OpenAI error code, retry-after for a timed
        sanction or a limit) for block and refuse."""
        action = verdict.get("action")
        if verdict["decision"] in ("block", "refuse") and action:
            wait = action.get("retry_after")
            raise HTTPException(status_code=int(action["status"]), detail={"error": {
                "message": action["message"], "type": "invalid_request_error", "param": None,
                "code": action["code"]}}, headers={"retry-after": str(max(1, round(wait)))} if wait else None)


def _withheld() -> HTTPException:
    return HTTPException(status_code=502, detail={"error": {
        "message": "The upstream answer was withheld by the content policy.", "type": "server_error",
        "param": None, "code": "content_policy_violation"}})


def _stream_texts(chunks: list[Any]) -> dict[int, str]:
    """Each choice's text, joined from its deltas (content and tool-call arguments); the
    `delta` strings of other events (the Responses API's) as choice 0."""
    texts: dict[int, list[str]] = {}
    for chunk in chunks:
        if not hasattr(chunk, "choices") and isinstance(getattr(chunk, "delta", None), str):
            texts.setdefault(0, []).append(chunk.delta)
        for choice in getattr(chunk, "choices", None) or []:
            parts = texts.setdefault(getattr(choice, "index", 0) or 0, [])
            delta = getattr(choice, "delta", None)
            if isinstance(getattr(delta, "content", None), str):
                parts.append(delta.content)
            for call in getattr(delta, "tool_calls", None) or []:
                arguments = getattr(getattr(call, "function", None), "arguments", None)
                if isinstance(arguments, str):
                    parts.append(arguments)
    return {index: "".join(parts) for index, parts in texts.items()}


def _mask_stream(chunks: list[Any], judged: dict) -> None:
    """The firewall's masked texts in place of the streamed ones: each choice's first content
    delta carries its whole judged text, the later ones none; its finish reason is the judged one."""
    by_index = {c.get("index", 0): c for c in judged.get("choices") or []}
    started: set[int] = set()
    for chunk in chunks:
        for choice in getattr(chunk, "choices", None) or []:
            index = getattr(choice, "index", 0) or 0
            target = by_index.get(index)
            if target is None:
                continue
            delta = getattr(choice, "delta", None)
            if delta is not None and getattr(delta, "content", None) is not None:
                delta.content = "" if index in started else (target.get("message") or {}).get("content") or ""
                started.add(index)
            if delta is not None and getattr(delta, "tool_calls", None):
                delta.tool_calls = None
            if getattr(choice, "finish_reason", None):
                choice.finish_reason = target.get("finish_reason") or choice.finish_reason
