"""The "My API tokens" page: create (shown once), list, revoke."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from auditapp.exceptions import ApplicationError

from .forms import ApiTokenCreateForm
from .selectors import api_token_list
from .services import api_token_create, api_token_may_own, api_token_revoke


def _owner_only(request) -> None:
    if not api_token_may_own(user=request.user):
        raise PermissionDenied("API tokens are for researchers and admins.")


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request):
    _owner_only(request)
    created = None
    form = ApiTokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            info, plaintext = api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_in=timedelta(days=form.cleaned_data["expires_in_days"]),
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            # The plaintext is in this one answer (no-store) and nowhere else: not in the
            # session, not in the database (knox keeps a digest), not in any later page.
            created = {"name": info.name, "token": plaintext, "expiry": info.token.expiry}
            form = ApiTokenCreateForm()
    status = 201 if created else (400 if request.method == "POST" else 200)
    context = {"form": form, "created": created, "tokens": api_token_list(user=request.user)}
    return render(request, "accounts/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    _owner_only(request)
    try:
        api_token_revoke(user=request.user, token_id=token_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Token revoked: it no longer works.")
    return redirect("accounts:tokens")
