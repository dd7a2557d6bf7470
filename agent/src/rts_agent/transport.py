"""HTTP and WebSocket calls to the rts-monitor API, and the retry rules around them.

Every call returns a decoded answer or raises ``TransportError`` carrying what the caller needs
to decide: ``retry_after`` for back-pressure (429/503), ``status`` for client errors (a 4xx
other than 408/429 will not get better by retrying), ``field`` for validation errors. Reconnects
use exponential backoff with full jitter so a server restart is not met by every agent at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import msgspec

from rts_agent import __version__
from rts_agent.http import Client

USER_AGENT = f"rts-agent/{__version__}"


class TransportError(Exception):
    """A request that did not succeed; ``status`` is None when the server was not reached."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 field: str | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.field = field
        self.body = body

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 5xx and back-pressure: try again later. Other 4xx: do not."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


@dataclass
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    base: float = 1.0
    cap: float = 60.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return random.uniform(self.base / 2, max(self.base / 2, ceiling))

    def reset(self) -> None:
        self.attempt = 0


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("retry-after") if headers is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class Api:
    """One agent's authenticated client (``Authorization: Bearer <agent_token>``)."""

    def __init__(self, client: Client, api_url: str, agent_id: str, token: str) -> None:
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.agent_id = agent_id
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    async def request(self, method: str, path: str, body: bytes | None = None,
                      time_limit: float = 30) -> Any:
        return await request(self.client, method, f"{self.api_url}/agents/{self.agent_id}{path}",
                             body=body, headers=self.headers, time_limit=time_limit)

    async def heartbeat(self, body: dict[str, Any]) -> Any:
        return await self.request("POST", "/heartbeat", msgspec.json.encode(body))

    async def send_metrics(self, samples: list[bytes]) -> Any:
        """POST pre-serialized samples as ``{"metrics": [...]}`` without re-encoding them."""
        body = b'{"metrics":[' + b",".join(samples) + b"]}"
        return await self.request("POST", "/metrics", body, time_limit=60)

    async def send_inventory(self, body: bytes) -> Any:
        return await self.request("POST", "/inventory", body, time_limit=60)

    async def poll_commands(self) -> list[dict[str, Any]]:
        answer = await self.request("GET", "/commands")
        commands = answer.get("commands", []) if isinstance(answer, dict) else []
        return [c for c in commands if isinstance(c, dict)]

    async def command_result(self, command_id: str, body: bytes) -> Any:
        return await self.request("POST", f"/commands/{command_id}/result", body)


def new_client() -> Client:
    return Client(user_agent=USER_AGENT, limit=8)


async def request(client: Client, method: str, url: str, *, body: bytes | None = None,
                  headers: dict[str, str] | None = None, time_limit: float = 30) -> Any:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        resp = await client.request(method, url, body=body, headers=hdrs, time_limit=time_limit)
    except (OSError, TimeoutError, ValueError) as exc:
        raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    try:
        data = msgspec.json.decode(resp.body) if resp.body else None
    except msgspec.DecodeError:
        data = resp.body.decode(errors="replace")[:500]
    if resp.status >= 400:
        message = data.get("message") if isinstance(data, dict) else str(data)
        field = data.get("field") if isinstance(data, dict) else None
        raise TransportError(f"{method} {url}: {resp.status} {message}", status=resp.status,
                             retry_after=_retry_after(resp.headers), field=field, body=data)
    return data


async def register(client: Client, server_url: str, token: str,
                   info: dict[str, object]) -> dict[str, Any]:
    """``POST /api/agents/register`` with a one-time ``AGT-…`` token; returns the answer."""
    body = {"token": token, "agent_version": __version__, "system_info": dict(info), **info}
    answer = await request(client, "POST", server_url.rstrip("/") + "/api/agents/register",
                           body=msgspec.json.encode(body))
    if not isinstance(answer, dict) or "agent_id" not in answer or "agent_token" not in answer:
        raise TransportError(f"unexpected register answer: {answer!r}"[:300])
    return answer
