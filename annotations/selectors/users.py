from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AbstractBaseUser

from annotations.roles import ANNOTATOR_ROLES
from auditapp.exceptions import ApplicationError


def annotators_get_by_usernames(*, usernames: list[str]) -> list[AbstractBaseUser]:
    """Active annotators (clinicians, participants who can sign in) by username, in the order
    given; any unknown name is an error."""
    names = [n.strip() for n in usernames if n.strip()]
    users = {
        u.get_username(): u
        for u in get_user_model()
        .objects.filter(
            username__in=names,
            is_active=True,
            groups__name__in=[r.value for r in ANNOTATOR_ROLES],
        )
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        .distinct()
    }
    missing = [n for n in names if n not in users]
    if missing:
        raise ApplicationError(
            f"Not an active clinician or participant: {', '.join(missing)}.",
            code="annotators",
            extra={"unknown": missing},
        )
    return [users[n] for n in dict.fromkeys(names)]
