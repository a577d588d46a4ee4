"""Typed keys for what the application object carries, shared by app.py and the API modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from llm_firewall.config import Settings
    from llm_firewall.gateway import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STATE: web.AppKey[dict[str, Any]] = web.AppKey("state")
