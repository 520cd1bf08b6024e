"""The emulated Twelfth intake, written from its (imaginary) documentation, sharing no code with the
connector: ``POST /twelfth/ingest`` with a Bearer token (401 without, 403 for an unknown one), a JSON object
body (400 otherwise), answered ``202 {"id": "tw-N"}``. Faults come from the framework."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

DEMO_TOKEN = "twelfthCanaryToken-5e0c9a7b3d1f"


@dataclass
class Settings:
    """The token the intake accepts."""

    token: str = DEMO_TOKEN


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The intake, mounted at ``/twelfth``."""
    app = web.Application()
    accepted: list[dict[str, Any]] = []
    hub.reset_hooks.append(accepted.clear)

    async def ingest(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return json_response({"error": "missing bearer token"}, status=401)
        if not secrets.compare_digest(given[7:].encode(), settings.token.encode()):
            return json_response({"error": "unknown token"}, status=403)
        try:
            data = json.loads(await request.read())
        except ValueError:
            return json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(data, dict):
            return json_response({"error": "body must be an object"}, status=400)
        accepted.append(data)
        return json_response({"id": f"tw-{len(accepted)}"}, status=202)

    app.router.add_post("/ingest", ingest)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Twelfth connector at this emulator."""
    entry = {"url_env": "TWELFTH_URL", "token_env": "TWELFTH_TOKEN", "allow_http": True}
    return entry, {"TWELFTH_URL": base_url + "/twelfth", "TWELFTH_TOKEN": settings.token}
