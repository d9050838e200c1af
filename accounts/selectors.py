"""Reads for the tokens page: what a token's owner may see of it (never the digest)."""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .models import ApiTokenInfo


@dataclass(frozen=True)
class ApiTokenRow:
    id: int
    name: str
    created: datetime
    expiry: datetime | None
    last_used_at: datetime | None
    expired: bool


def api_token_list(*, user: AbstractBaseUser) -> list[ApiTokenRow]:
    now = timezone.now()
    rows = (
        ApiTokenInfo.objects.filter(token__user=user)
        .select_related("token")
        .order_by("-token__created", "-pk")
    )
    return [
        ApiTokenRow(
            id=info.pk,
            name=info.name,
            created=info.token.created,
            expiry=info.token.expiry,
            last_used_at=info.last_used_at,
            expired=info.token.expiry is not None and info.token.expiry <= now,
        )
        for info in rows
    ]
