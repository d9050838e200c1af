"""The three roles. Admins are staff; researchers and clinicians are Django groups."""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    CLINICIAN = "clinician"


GROUP_ROLES = (Role.RESEARCHER, Role.CLINICIAN)


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if role is Role.ADMIN:
        return bool(user.is_staff)
    return user.groups.filter(name=role.value).exists()


def user_is_researcher_or_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user_has_role(user, Role.ADMIN) or user_has_role(user, Role.RESEARCHER)
