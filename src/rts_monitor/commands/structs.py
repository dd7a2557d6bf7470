"""The wire contract of remote commands: portal requests, agent polling/results, WebSocket messages.

Agent-facing shapes follow the API contract exactly (``GET …/commands`` → ``{"commands": [{command_id,
command_type, params, timeout_seconds}]}``; WebSocket ``{"type": "command", …}``,
``{"type": "command_result", …}``, ``{"type": "event", …}``). Extra message types (heartbeat,
acks, errors) are documented in ``docs/websocket.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from rts_monitor.core.types import (
    Int32,
    Name50,
    Name100,
    NonNegativeInt32,
    Note,
    PositiveInt32,
    check_json_size,
    reported_time,
)

# --- typed params, one Struct per allow-listed command type -------------------------------------

MAX_SCRIPT_CHARS = 65_536
# A command's params as sent, before they are checked against their type: bounded on their own so
# an unknown command_type cannot store (or echo) megabytes.
MAX_PARAMS_BYTES = 128 * 1024

# Service names: letters, digits and the punctuation systemd/Windows/launchd names use. No shell
# metacharacters, so an agent that (wrongly) built a command line could still not be injected.
ServiceName = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9@._:+\- ]+$")]
Version = Annotated[str, msgspec.Meta(max_length=50, pattern=r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.\-]+)?$")]
Argument = Annotated[str, msgspec.Meta(max_length=4096)]


class RestartServiceParams(msgspec.Struct, forbid_unknown_fields=True):
    service_name: ServiceName


class RunScriptParams(msgspec.Struct, forbid_unknown_fields=True):
    """The interpreter is checked against ``RTS_COMMAND_SCRIPT_INTERPRETERS`` by the service."""

    interpreter: Name50
    # stored in the command's JSONB params and shipped to the agent in one message
    script: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SCRIPT_CHARS)]
    arguments: Annotated[list[Argument], msgspec.Meta(max_length=64)] = []
    working_directory: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None


# A pip requirement name, wheel, directory or URL: no leading dash (pip options), no whitespace.
PipSource = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=r"^[^\s-]\S*$")]


# The hex SHA-256 of a package file, as ``GET /agent/package`` publishes it.
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class UpdateAgentParams(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``source`` defaults to what /install.sh installs: ``RTS_AGENT_PIP_SOURCE``, else this server's
    own agent wheel (which only serves its own version). ``sha256``: the agent installs only a file
    with this hash; filled in for this server's own wheel, which it publishes."""

    target_version: Version
    source: PipSource | None = None
    sha256: Sha256Hex | None = None


class CollectInventoryParams(msgspec.Struct, forbid_unknown_fields=True):
    pass


PARAMS_BY_TYPE: dict[str, type[msgspec.Struct]] = {
    "restart_service": RestartServiceParams,
    "run_script": RunScriptParams,
    "update_agent": UpdateAgentParams,
    "collect_inventory": CollectInventoryParams,
}

# --- portal side ---------------------------------------------------------------------------------


class CreateCommand(msgspec.Struct, forbid_unknown_fields=True):
    command_type: Name100
    params: dict[str, Any] = {}
    timeout_seconds: PositiveInt32 = 300

    def __post_init__(self) -> None:
        check_json_size(self.params, "params", MAX_PARAMS_BYTES)


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body of approve/reject/cancel."""

    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None  # status_reason and the audit row


class CommandEvent(msgspec.Struct):
    at: datetime
    event: str
    from_status: str | None
    to_status: str | None
    actor_type: str
    actor_user_id: UUID | None
    actor_agent_id: UUID | None
    via: str | None
    detail: dict[str, Any] | None


class Command(msgspec.Struct):
    id: UUID
    agent_id: UUID
    business_id: UUID
    command_type: str
    params: dict[str, Any]
    status: str
    timeout_seconds: int
    requested_by: UUID
    approval_required: bool
    approved_by: UUID | None
    approved_at: datetime | None
    rejected_by: UUID | None
    rejected_at: datetime | None
    cancelled_by: UUID | None
    cancelled_at: datetime | None
    status_reason: str | None
    created_at: datetime
    status_changed_at: datetime | None
    sent_at: datetime | None
    delivered_via: str | None
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    error_message: str | None
    result_received_at: datetime | None
    late_result_at: datetime | None
    history: list[CommandEvent] | None = None


class CommandList(msgspec.Struct):
    commands: list[Command]


# --- agent side ----------------------------------------------------------------------------------


class AgentCommand(msgspec.Struct):
    """One command handed to the agent (the API contract: GET /api/agents/:id/commands)."""

    command_id: UUID
    command_type: str
    params: dict[str, Any]
    timeout_seconds: int


class AgentCommands(msgspec.Struct):
    commands: list[AgentCommand]


ResultStatus = Literal["executing", "completed", "failed", "timeout"]


class CommandResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Plan: POST /api/agents/:id/commands/:command_id/result. ``executing`` reports the start."""

    status: ResultStatus
    exit_code: Int32 | None = None
    # Any length: the service keeps RTS_COMMAND_OUTPUT_MAX_BYTES of each and says it cut them.
    stdout: str | None = None
    stderr: str | None = None
    error_message: Note | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def __post_init__(self) -> None:
        reported_time(self.started_at, "started_at")
        reported_time(self.completed_at, "completed_at")


class ResultAck(msgspec.Struct):
    """``applied``: this report changed the status; ``late``: kept but the command was already
    timed out or cancelled; neither: a repeat of what is already recorded."""

    command_id: UUID
    status: str
    applied: bool
    late: bool


# --- WebSocket messages ----------------------------------------------------------------------------


class WsCommand(msgspec.Struct, tag_field="type", tag="command"):
    command_id: UUID
    command_type: str
    params: dict[str, Any]
    timeout_seconds: int


class WsCancel(msgspec.Struct, tag_field="type", tag="cancel_command"):
    """Pushed when the portal cancels a command the agent already has: stop it if it runs."""

    command_id: UUID


class WsRotateToken(msgspec.Struct, tag_field="type", tag="rotate_token"):
    """Pushed when the agent's token is due for rotation: heartbeat now, the answer carries the new
    token (auth/rotation.py). The token itself never travels this way: a push has no answer to
    confirm it arrived."""


# What agents send ignores fields this server does not know (a newer agent's additions), as the
# HTTP bodies do; portal-facing bodies refuse unknown fields (a typo there is a person's mistake).
class WsCommandResult(CommandResult, tag_field="type", tag="command_result", kw_only=True):
    command_id: UUID


class WsEvent(msgspec.Struct, tag_field="type", tag="event"):
    """``events.structs.EventIn`` with the tag (the same rules: the service builds an EventIn)."""

    event_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,99}$")]
    timestamp: datetime | None = None
    data: dict[str, Any] = {}
    event_id: UUID | None = None


class WsHeartbeat(msgspec.Struct, tag_field="type", tag="heartbeat"):
    """The HTTP heartbeat's body (``devices.structs.HeartbeatRequest``) with the tag."""

    timestamp: datetime | None = None
    status: Literal["online", "error", "offline"] = "online"
    agent_version: Name50 | None = None
    config_version: NonNegativeInt32 | None = None

    def __post_init__(self) -> None:
        reported_time(self.timestamp, "timestamp")


AgentMessage = WsCommandResult | WsEvent | WsHeartbeat


class WsCommandResultAck(msgspec.Struct, tag_field="type", tag="command_result_ack"):
    command_id: UUID
    status: str
    applied: bool
    late: bool


class WsEventAck(msgspec.Struct, tag_field="type", tag="event_ack"):
    event_type: str
    id: int
    duplicate: bool
    event_id: UUID | None = None


class WsHeartbeatAck(msgspec.Struct, tag_field="type", tag="heartbeat_ack"):
    """The HTTP heartbeat's answer with the tag."""

    config_updated: bool
    pending_commands: int
    config_version: int
    status: str
    server_time: datetime
    cancel_commands: list[UUID] = []


class WsError(msgspec.Struct, tag_field="type", tag="error", omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    command_id: UUID | None = None
