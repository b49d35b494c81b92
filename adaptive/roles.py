"""Roles are Django groups: viewer (read), operator (actions), admin (everything).

A user's role is the highest group they belong to; superusers are admins.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


GROUP_ROLES = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def role_of(user: Any) -> Role:
    """The user's role, cached on the user object for the rest of the request."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "is_ingestion_key", False):
        return Role.NONE
    cached = getattr(user, "_control_room_role", None)
    if cached is not None:
        return Role(cached)
    if user.is_superuser:
        role = Role.ADMIN
    else:
        names = user.groups.values_list("name", flat=True)
        role = max((GROUP_ROLES.get(name, Role.NONE) for name in names), default=Role.NONE)
    user._control_room_role = int(role)
    return role
