"""The caller, once authenticated, and the tenancy rules every query applies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from rts_monitor.core.errors import Forbidden, NotFound


class Role(StrEnum):
    admin = "admin"
    technician = "technician"
    customer = "customer"


@dataclass(frozen=True)
class Principal:
    """A portal user. Staff (admin, technician) see every business; a customer only its own."""

    user_id: UUID
    role: Role
    business_id: UUID | None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.admin, Role.technician)

    @property
    def business_scope(self) -> UUID | None:
        """The one business a query must be restricted to; None means all (staff)."""
        return None if self.is_staff else self.business_id

    def can_see(self, business_id: UUID | None) -> bool:
        return self.is_staff or (business_id is not None and business_id == self.business_id)

    def require_visible(self, business_id: UUID | None, what: str = "object") -> None:
        """Another tenant's object is a 404: never confirm that it exists."""
        if not self.can_see(business_id):
            raise NotFound(f"{what} not found")


@dataclass(frozen=True)
class AgentPrincipal:
    """An enrolled agent, authenticated by its own token."""

    agent_id: UUID
    business_id: UUID
    service_location_id: UUID | None
    # Authenticated with the token a rotation replaced (still in its grace period): the agent has
    # not switched to the new one, so the heartbeat hands it a token again (auth/rotation.py).
    previous_token: bool = False


def require_staff(principal: Principal) -> None:
    if not principal.is_staff:
        raise Forbidden("admin or technician role required")


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden("requires role " + " or ".join(r.value for r in roles))
