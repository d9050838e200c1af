"""What knox's token row lacks: the name its owner gave it and when it was last used.

knox keeps the token itself (a SHA-512 digest, the first characters for lookup, created and
expiry); this row sits beside it and goes when knox deletes the token (revoked or expired).
"""

from django.db import models


class ApiTokenInfo(models.Model):
    token = models.OneToOneField("knox.AuthToken", on_delete=models.CASCADE, related_name="info")
    name = models.CharField(max_length=100)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
