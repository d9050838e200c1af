import json

from django import forms
from django.contrib.auth.password_validation import validate_password

from studies.services.people import DEFAULT_VALID_HOURS, MAX_VALID_HOURS


class PeopleUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with the columns username, role, and optionally email and display_name."
    )
    valid_hours = forms.IntegerField(
        min_value=1,
        max_value=MAX_VALID_HOURS,
        initial=DEFAULT_VALID_HOURS,
        label="Links valid for (hours)",
    )


class StudyLinkForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    batch = forms.ChoiceField(choices=(), help_text="The trace batch assignments are drawn from.")
    capacity = forms.IntegerField(min_value=1, max_value=100_000, initial=100)
    items_per_participant = forms.IntegerField(
        min_value=1, required=False, help_text="Empty: every trace of the batch."
    )
    opens_at = forms.DateTimeField(required=False, help_text="UTC, e.g. 2026-12-01 09:00.")
    closes_at = forms.DateTimeField(required=False, help_text="UTC; empty: open until closed.")
    platform_param = forms.CharField(
        max_length=40, initial="PROLIFIC_PID", label="Platform id parameter"
    )
    completion_code = forms.CharField(max_length=64, required=False)
    completion_url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    consent = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        help_text="Markdown. Required for the audit's first link.",
    )
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), required=False, help_text="Markdown."
    )
    settings_json = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        label="Practice, attention checks and questionnaire (JSON)",
        help_text='Keys "practice", "attention_checks", "questionnaire", '
        '"max_attention_failures" — docs/studies.md.',
    )

    def __init__(self, *args, batches=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["batch"].choices = [(b.pk, b.name) for b in batches]

    def clean_settings_json(self) -> dict:
        text = self.cleaned_data["settings_json"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not JSON: {exc.msg} (line {exc.lineno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object.")
        return value

    def study_settings(self) -> dict:
        settings = dict(self.cleaned_data["settings_json"])
        for key in ("consent", "instructions"):
            if self.cleaned_data[key].strip():
                settings[key] = self.cleaned_data[key]
        return settings


class SetPasswordForm(forms.Form):
    password1 = forms.CharField(
        label="New password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="The same again",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        data = super().clean()
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            raise forms.ValidationError("The two passwords differ.")
        if first:
            validate_password(first, self.user)
        return data
