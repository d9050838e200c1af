"""Accounts in bulk: a CSV of people in, a CSV of one-time sign-in links out.

No password is made, printed or sent: each person opens their link (valid for a set time,
used once) and chooses a password. Only the SHA-256 of a link's token is stored.
"""

import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from annotations.roles import Role
from auditapp.agreement.formats import csv_cell_safe
from auditapp.exceptions import ApplicationError, ImportRejected
from studies.models import SignInLink

COLUMNS = ("username", "role", "email", "display_name")
REQUIRED = ("username", "role")
USERNAME_RE = re.compile(r"^[A-Za-z0-9@.+_-]{1,150}$")  # Django's own username rule
MAX_ROWS = 5000
DEFAULT_VALID_HOURS = 72
MAX_VALID_HOURS = 24 * 30


@dataclass(frozen=True)
class PersonRow:
    line: int
    username: str
    role: Role
    email: str
    display_name: str


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True)
class IssuedLink:
    user_id: int
    username: str
    role: str
    email: str
    url: str
    expires_at: datetime


def people_parse(*, text: str) -> list[PersonRow]:
    """Every row checked; any problem rejects the file with each problem's line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportRejected([Problem(1, f"missing column(s): {', '.join(missing)}")])
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportRejected([Problem(1, f"unknown column(s): {', '.join(unknown)}")])
    reader.fieldnames = header
    rows, problems, seen = [], [], {}
    roles = {r.value for r in Role}
    for line, record in enumerate(reader, start=2):
        if line - 1 > MAX_ROWS:
            problems.append(Problem(line, f"more than {MAX_ROWS} people in one file"))
            break
        if None in record:
            problems.append(Problem(line, "more cells than columns"))
            continue
        cells = {k: (v or "").strip() for k, v in record.items()}
        if not any(cells.values()):
            continue  # a blank line
        username, role = cells.get("username", ""), cells.get("role", "")
        email, display = cells.get("email", ""), cells.get("display_name", "")
        if not USERNAME_RE.fullmatch(username):
            problems.append(
                Problem(line, "username: 1–150 letters, digits or @ . + - _ (no spaces)")
            )
        elif username.casefold() in seen:
            first = seen[username.casefold()]
            problems.append(Problem(line, f"username {username!r} repeats line {first}"))
        else:
            seen[username.casefold()] = line
        if role not in roles:
            problems.append(Problem(line, f"role must be one of: {', '.join(sorted(roles))}"))
        if email:
            try:
                validate_email(email)
            except ValidationError:
                problems.append(Problem(line, f"email {email!r} is not an address"))
        if len(display) > 150:
            problems.append(Problem(line, "display_name: at most 150 characters"))
        if role in roles and USERNAME_RE.fullmatch(username):
            rows.append(PersonRow(line, username, Role(role), email, display))
    taken = set(
        get_user_model()
        .objects.filter(username__in=[r.username for r in rows])
        .values_list("username", flat=True)
    )
    problems += [
        Problem(r.line, f"username {r.username!r} already exists")
        for r in rows
        if r.username in taken
    ]
    if problems:
        raise ImportRejected(
            sorted(problems, key=lambda p: p.line),
            message=f"The file was rejected: {len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}. Nobody was created.",
        )
    if not rows:
        raise ImportRejected([Problem(1, "no people in the file")])
    return rows


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _split_name(display: str) -> tuple[str, str]:
    first, _, last = display.partition(" ")
    return first[:150], last[:150]


@transaction.atomic
def people_create(
    *, rows: list[PersonRow], base_url: str, valid_hours: int = DEFAULT_VALID_HOURS
) -> list[IssuedLink]:
    """Create everyone (one transaction, no password hashing) and a sign-in link each."""
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise ApplicationError(
            f"Links last from 1 hour to {MAX_VALID_HOURS} hours.", code="valid_hours"
        )
    user_model = get_user_model()
    unusable = make_password(None)  # one unusable hash for all: nobody can sign in before
    users = []
    for row in rows:
        first, last = _split_name(row.display_name)
        users.append(
            user_model(
                username=row.username,
                email=row.email,
                first_name=first,
                last_name=last,
                is_staff=row.role is Role.ADMIN,
                is_superuser=row.role is Role.ADMIN,
                is_active=True,
                password=unusable,
            )
        )
    user_model.objects.bulk_create(users)
    # bulk_create sets primary keys on PostgreSQL and SQLite ≥ 3.35.
    groups = {
        role: Group.objects.get_or_create(name=role.value)[0]
        for role in {r.role for r in rows}
        if role is not Role.ADMIN
    }
    through = user_model.groups.through
    through.objects.bulk_create(
        [
            through(user_id=user.pk, group_id=groups[row.role].pk)
            for user, row in zip(users, rows, strict=True)
            if row.role is not Role.ADMIN
        ]
    )
    expires_at = timezone.now() + timedelta(hours=valid_hours)
    issued, links = [], []
    base = base_url.rstrip("/")
    for user, row in zip(users, rows, strict=True):
        token = secrets.token_urlsafe(32)
        digest = _token_digest(token)
        links.append(SignInLink(user=user, token_digest=digest, expires_at=expires_at))
        issued.append(
            IssuedLink(
                user_id=user.pk,
                username=user.username,
                role=row.role.value,
                email=row.email,
                url=f"{base}/sign-in/{token}/",
                expires_at=expires_at,
            )
        )
    SignInLink.objects.bulk_create(links)
    return issued


def links_csv(*, issued: list[IssuedLink]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "role", "email", "sign_in_url", "expires_at"])
    for link in issued:
        writer.writerow(
            [
                csv_cell_safe(link.username),
                link.role,
                csv_cell_safe(link.email),
                link.url,
                link.expires_at.isoformat(timespec="seconds"),
            ]
        )
    return out.getvalue()


# --- using a link --------------------------------------------------------------------------
LINK_GONE = "This sign-in link has expired or was already used. Ask the study team for a new one."


def sign_in_link_get(*, token: str, for_update: bool = False) -> SignInLink:
    """A live link (not used, not expired), or ApplicationError (410) with one message for
    all failures: a guessed token learns nothing."""
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", token):
        raise _gone()
    queryset = SignInLink.objects.select_related("user")
    if for_update:
        queryset = queryset.select_for_update(of=("self",))
    link = queryset.filter(token_digest=_token_digest(token)).first()
    if (
        link is None
        or link.used_at is not None
        or link.expires_at <= timezone.now()
        or not link.user.is_active
    ):
        raise _gone()
    return link


def _gone() -> ApplicationError:
    error = ApplicationError(LINK_GONE, code="sign_in_link_gone")
    error.status_code = 410
    return error


@transaction.atomic
def sign_in_link_use(*, token: str, password: str) -> AbstractBaseUser:
    """Set the password and spend the link (locked: two tabs cannot both use it)."""
    link = sign_in_link_get(token=token, for_update=True)
    user = link.user
    user.set_password(password)
    user.save(update_fields=["password"])
    link.used_at = timezone.now()
    link.save(update_fields=["used_at"])
    # Any other unused link of this person goes too: one password, one way in.
    SignInLink.objects.filter(user=user, used_at__isnull=True).update(used_at=link.used_at)
    return user
