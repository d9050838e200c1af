from rest_framework.permissions import BasePermission

from annotations.roles import Role, user_has_role, user_is_annotator, user_is_researcher_or_admin


class IsAdmin(BasePermission):
    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, Role.ADMIN)


class IsResearcherOrAdmin(BasePermission):
    def has_permission(self, request, view) -> bool:
        return user_is_researcher_or_admin(request.user)


class IsClinician(BasePermission):
    """An annotator: a clinician, or a participant (who works the same way on their own)."""

    def has_permission(self, request, view) -> bool:
        return user_is_annotator(request.user)
