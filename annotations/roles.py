"""The four roles. Admins are staff; researchers, clinicians and participants are Django groups.

A participant (a non-expert rater, often enrolled through a study link) works like a clinician:
only their own assignments, through the same blinded door.

Every API call checks a role, so a user's group names are cached (Django's cache: Redis in
production) and dropped the moment they can change: when the user is saved or deleted and when
their groups change (signals below). The TTL is only a backstop.
"""

from enum import StrEnum

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver


class Role(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    CLINICIAN = "clinician"
    PARTICIPANT = "participant"


# The roles that label or rate their own assignments (the annotator pages and APIs).
ANNOTATOR_ROLES = (Role.CLINICIAN, Role.PARTICIPANT)


GROUPS_CACHE_SECONDS = 300


def _groups_key(user_pk: int) -> str:
    # The database name is part of the key: test runs (and several deployments sharing one
    # Redis) must never read each other's users.
    return f"user-groups:{settings.DATABASES['default']['NAME']}:{user_pk}"


def _group_names(user: AbstractBaseUser) -> frozenset[str]:
    names = getattr(user, "_stepaudit_groups", None)
    if names is None:
        key = _groups_key(user.pk)
        names = cache.get(key)
        if names is None:
            names = frozenset(user.groups.values_list("name", flat=True))
            cache.set(key, names, GROUPS_CACHE_SECONDS)
        user._stepaudit_groups = names
    return names


def user_groups_forget(user_pk: int) -> None:
    cache.delete(_groups_key(user_pk))


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if role is Role.ADMIN:
        return bool(user.is_staff)
    return role.value in _group_names(user)


def user_is_annotator(user: AbstractBaseUser | AnonymousUser) -> bool:
    """A clinician or a participant: may work on their own assignments, nothing else."""
    return any(user_has_role(user, role) for role in ANNOTATOR_ROLES)


def user_is_researcher_or_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user_has_role(user, Role.ADMIN) or user_has_role(user, Role.RESEARCHER)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def _user_changed(sender, instance, **kwargs) -> None:
    user_groups_forget(instance.pk)
    instance.__dict__.pop("_stepaudit_groups", None)


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _user_groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if not action.startswith("post_"):
        return
    if reverse:  # group.user_set changed: forget every user touched
        for pk in pk_set or instance.user_set.values_list("pk", flat=True):
            user_groups_forget(pk)
    else:
        user_groups_forget(instance.pk)
        instance.__dict__.pop("_stepaudit_groups", None)
