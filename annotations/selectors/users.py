from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from annotations.roles import Role
from auditapp.exceptions import ApplicationError


def annotators_get_by_usernames(*, usernames: list[str]) -> list[AbstractBaseUser]:
    """Active clinicians by username, in the order given; any unknown name is an error."""
    names = [n.strip() for n in usernames if n.strip()]
    users = {
        u.get_username(): u
        for u in get_user_model().objects.filter(
            username__in=names, is_active=True, groups__name=Role.CLINICIAN.value
        )
    }
    missing = [n for n in names if n not in users]
    if missing:
        raise ApplicationError(
            f"Not an active clinician: {', '.join(missing)}.",
            code="annotators",
            extra={"unknown": missing},
        )
    return [users[n] for n in dict.fromkeys(names)]
