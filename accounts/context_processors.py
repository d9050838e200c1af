from django.http import HttpRequest

from .services import api_token_may_own


def api_tokens(request: HttpRequest) -> dict:
    """``may_have_api_tokens`` for the nav link; a callable, so only pages that show the nav
    (signed in) look up the role."""
    return {"may_have_api_tokens": lambda: api_token_may_own(user=request.user)}
