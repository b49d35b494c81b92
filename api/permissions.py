"""Role checks for the API (see adaptive.roles). Ingestion keys pass only ``CanIngest``."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from adaptive.roles import Role, role_of


class _RolePermission(permissions.BasePermission):
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = self.read_role if request.method in permissions.SAFE_METHODS else self.write_role
        return role_of(request.user) >= needed


class IsViewer(_RolePermission):
    """Read for viewers and up; writes need an admin unless a view says otherwise."""


class IsOperatorForWrites(_RolePermission):
    """Read for viewers, writes (actions, uploads) for operators and admins."""

    write_role = Role.OPERATOR


class IsAdminForWrites(_RolePermission):
    """Read for viewers, writes for admins only (creating deployments, keys)."""


class CanIngest(permissions.BasePermission):
    """Predict and feedback: an ingestion key of this deployment, or an operator/admin user."""

    message = "This key or user may not send predictions or feedback to this deployment."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if getattr(user, "is_ingestion_key", False):
            # The slug is checked against the key's deployment in the view, after the lookup.
            return True
        return role_of(user) >= Role.OPERATOR


def key_may_use(request: Request, deployment_id: int) -> bool:
    user = request.user
    return not getattr(user, "is_ingestion_key", False) or user.deployment_id == deployment_id
