"""Who may do what with judges. A judge names a host and a key the server will use, so saving
one is a deployment decision (``STEPAUDIT_JUDGE_EDITORS``, docs/deploy.md): admins always;
researchers too when the setting says "researchers", and then only within the allowed hosts
and key names, which every save checks."""

from django.conf import settings
from rest_framework.permissions import BasePermission

from annotations.roles import Role, user_has_role


def user_may_edit_judges(user) -> bool:
    if user_has_role(user, Role.ADMIN):
        return True
    return settings.STEPAUDIT_JUDGE_EDITORS == "researchers" and user_has_role(
        user, Role.RESEARCHER
    )


class IsJudgeEditor(BasePermission):
    message = "Only admins (or researchers, where the deployment allows it) may save judges."

    def has_permission(self, request, view) -> bool:
        return user_may_edit_judges(request.user)
