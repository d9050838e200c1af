"""API tokens for notebooks: create (the plaintext is returned once, never stored), revoke."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

import auditapp.exceptions as app_errors  # by name: see authentication.py
from annotations.roles import user_is_researcher_or_admin

from .models import ApiTokenInfo

# A notebook needs one or two; twenty is enough for several machines and stops a script gone
# wrong from filling the table.
MAX_TOKENS_PER_USER = 20

# How often the "last used" time is written: once a minute at most, so a notebook looping over
# the API does not turn every GET into an UPDATE.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_token_may_own(*, user: AbstractBaseUser) -> bool:
    """Tokens are for researchers and admins (notebooks, exports). Clinicians label in the
    browser; a long-lived credential on their machine would serve nothing."""
    return user_is_researcher_or_admin(user)


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, name: str, expires_in: timedelta
) -> tuple[ApiTokenInfo, str]:
    """Create a token; returns its row and the plaintext, which exists only in this answer."""
    if not api_token_may_own(user=user):
        raise app_errors.ForbiddenError("API tokens are for researchers and admins.")
    name = name.strip()
    if not name:
        raise app_errors.ApplicationError("Give the token a name.", extra={"field": "name"})
    max_days = settings.STEPAUDIT_API_TOKEN_MAX_DAYS
    if expires_in <= timedelta(0) or expires_in > timedelta(days=max_days):
        raise app_errors.ApplicationError(
            f"A token lasts at most {max_days} days.", extra={"field": "expires_in"}
        )
    # Lock the user's row so two concurrent creates cannot both pass the count.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    live = AuthToken.objects.filter(user=user).exclude(expiry__lt=timezone.now()).count()
    if live >= MAX_TOKENS_PER_USER:
        raise app_errors.ApplicationError(
            f"You have {live} tokens; revoke one first.", code="too_many_tokens"
        )
    token, plaintext = AuthToken.objects.create(user=user, expiry=expires_in)
    info = ApiTokenInfo.objects.create(token=token, name=name)
    return info, plaintext


@transaction.atomic
def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> None:
    """Delete one of the user's own tokens; another user's token is 'not found', not 403."""
    info = ApiTokenInfo.objects.select_related("token").filter(pk=token_id, token__user=user)
    found = info.first()
    if found is None:
        raise app_errors.NotFoundError("No such token.")
    found.token.delete()  # the info row goes with it (cascade)


def api_token_touch(*, token: AuthToken) -> None:
    """Record that ``token`` authenticated a request (at most once a minute)."""
    now = timezone.now()
    ApiTokenInfo.objects.filter(token=token).exclude(
        last_used_at__gt=now - LAST_USED_RESOLUTION
    ).update(last_used_at=now)
