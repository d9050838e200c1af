"""Admins see and revoke everyone's API tokens, never create or edit them.

knox's own admin is replaced: its add form hands the admin another user's plaintext token (a
way to act as that user through the API), and its change form shows the token's lookup
prefix. Tokens are made by their owner, on the My API tokens page, and shown only there.
"""

from django.contrib import admin
from knox.models import AuthToken

admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "created", "expiry", "last_used")
    list_select_related = ("user", "info")
    search_fields = ("user__username", "info__name")
    fields = ("user", "name", "created", "expiry", "last_used")
    readonly_fields = fields

    @admin.display(description="name")
    def name(self, token: AuthToken) -> str:
        info = getattr(token, "info", None)
        return info.name if info else "(no name)"

    @admin.display(description="last used")
    def last_used(self, token: AuthToken):
        info = getattr(token, "info", None)
        return info.last_used_at if info else None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
