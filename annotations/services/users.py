import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

from annotations.roles import Role


def password_generate() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def user_create_or_update(*, username: str, role: Role, password: str) -> AbstractUser:
    """Create the account (or reset it) with exactly the given role and password."""
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    user.is_staff = role is Role.ADMIN
    user.is_superuser = role is Role.ADMIN
    user.is_active = True
    user.set_password(password)
    user.save()
    user.groups.set(
        [Group.objects.get_or_create(name=role.value)[0]] if role is not Role.ADMIN else []
    )
    return user
