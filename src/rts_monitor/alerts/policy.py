"""Tickets by policy: per business, which alert severities open a ticket (docs/alerts.md).

A business without a policy follows the API contract (every alert opens a ticket); a rule's
``create_ticket`` true or false overrides the policy, ``null`` follows it. The evaluation reads
it where episodes enqueue their follow-up work (``rule_followup_channels``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection

from rts_monitor.alerts.structs import TicketPolicy, TicketPolicyIn
from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import Forbidden, NotFound, ValidationFailed
from rts_monitor.db import Queries
from rts_monitor.db.rows import fetch_one

Q = Queries.beside(__file__)


async def get(conn: AsyncConnection[Any], *, principal: Principal, business_id: UUID) -> TicketPolicy:
    row = await fetch_one(conn, Q.ticket_policy, {"business_id": business_id, "scope": principal.business_scope})
    if row is None:
        raise NotFound("business not found")
    return msgspec.convert(row, TicketPolicy)


async def put(conn: AsyncConnection[Any], *, principal: Principal, business_id: UUID,
              body: TicketPolicyIn) -> TicketPolicy:
    before = await get(conn, principal=principal, business_id=business_id)
    if not principal.is_staff:
        raise Forbidden("only an admin or technician can set the ticket policy")
    if len(set(body.ticket_severities)) != len(body.ticket_severities):
        raise ValidationFailed("ticket_severities: a severity is listed twice", field="ticket_severities")
    order = ["info", "warning", "critical"]
    severities = sorted(body.ticket_severities, key=order.index)
    async with conn.transaction():
        await conn.execute(Q.set_ticket_policy, {"business_id": business_id, "ticket_severities": severities})
        await audit.record(conn, principal=principal, action="ticket_policy.set", object_type="business",
                           object_id=business_id, business_id=business_id,
                           before={"ticket_severities": before.ticket_severities},
                           after={"ticket_severities": severities})
    return await get(conn, principal=principal, business_id=business_id)
