from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from .middleware import session_mark_signed_in


@receiver(user_logged_in)
def _start_session_clocks(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        session_mark_signed_in(request=request)
