"""Members of the ``admin`` group are administrators everywhere, Django admin included.

Roles are groups (adaptive.roles), so an admin needs neither ``is_staff`` nor ``is_superuser``:
this backend grants them every model permission, and :func:`admin_site_permission` lets them into
the Django admin site. Viewers and operators keep only the permissions given to them explicitly.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.http import HttpRequest

from adaptive.roles import Role, role_of


def is_admin(user: Any) -> bool:
    return bool(getattr(user, "is_active", False)) and role_of(user) >= Role.ADMIN


class RoleAdminBackend(BaseBackend):
    """Grants every permission to active admins; authenticates nobody (ModelBackend does that)."""

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return is_admin(user_obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return is_admin(user_obj)


def admin_site_permission(request: HttpRequest) -> bool:
    """Django admin's gate: staff as Django has it, or an admin by role."""
    user = request.user
    return bool(user.is_active and (user.is_staff or is_admin(user)))
