from django import forms
from django.conf import settings

EXPIRY_CHOICES_DAYS = (7, 30, 90, 365)


def _expiry_choices() -> list[tuple[int, str]]:
    allowed = [d for d in EXPIRY_CHOICES_DAYS if d <= settings.STEPAUDIT_API_TOKEN_MAX_DAYS]
    return [(d, f"{d} days") for d in allowed or [settings.STEPAUDIT_API_TOKEN_MAX_DAYS]]


class ApiTokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Where it is used, e.g. “laptop notebook”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    expires_in_days = forms.TypedChoiceField(coerce=int, label="Expires after")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = _expiry_choices()
        self.fields["expires_in_days"].choices = choices
        default = 90 if any(d == 90 for d, _ in choices) else choices[-1][0]
        self.fields["expires_in_days"].initial = default
