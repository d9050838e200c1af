"""Page forms; each calls the same service as the API."""

from django import forms

from auditapp.agreement.report import REPORT_KEYS


class ReportSettingsForm(forms.Form):
    seed = forms.IntegerField(min_value=0, required=False)
    resamples = forms.IntegerField(min_value=1, max_value=100_000, required=False)
    ece_bins = forms.IntegerField(min_value=1, max_value=1000, required=False, label="ECE bins")
    confidence_level = forms.FloatField(
        min_value=0.5, max_value=0.999, required=False, help_text="e.g. 0.9 or 0.99"
    )
    abstain_rule = forms.ChoiceField(
        choices=[
            ("", "(plan / default)"),
            ("exclude", "exclude"),
            ("error", "as error"),
            ("correct", "as correct"),
        ],
        required=False,
    )

    def settings(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        return {k: (data.get(k) if data.get(k) not in ("", None) else None) for k in self.fields}


class PlannerForm(forms.Form):
    p1 = forms.FloatField(min_value=0.001, max_value=0.999, initial=0.3, label="error rate A")
    p2 = forms.FloatField(min_value=0.001, max_value=0.999, initial=0.5, label="error rate B")
    alpha = forms.FloatField(min_value=0.0001, max_value=0.5, initial=0.05)
    power = forms.FloatField(min_value=0.05, max_value=0.999, initial=0.8)
    steps_per_trace = forms.FloatField(min_value=1, initial=1, label="labelled steps per trace")
    icc = forms.FloatField(min_value=0, max_value=1, initial=0, label="intra-trace correlation")


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class PlanLockForm(forms.Form):
    metrics = forms.MultipleChoiceField(
        choices=[(k, k.replace("_", " ")) for k in REPORT_KEYS if k != "methods"],
        initial=[k for k in REPORT_KEYS if k != "methods"],
        widget=forms.CheckboxSelectMultiple,
    )
    abstain_rule = forms.ChoiceField(
        choices=[
            ("exclude", "exclude abstentions"),
            ("error", "count as error"),
            ("correct", "count as correct"),
        ]
    )
    resamples = forms.IntegerField(min_value=1, max_value=100_000, initial=2000)
    confidence_level = forms.FloatField(min_value=0.5, max_value=0.999, initial=0.95)
    ece_bins = forms.IntegerField(min_value=1, max_value=1000, initial=10, label="ECE bins")
    seed = forms.IntegerField(min_value=0, initial=0)
    exclude_evaluators = forms.CharField(required=False, help_text="comma-separated")
    exclude_trace_ids = forms.CharField(required=False, help_text="comma-separated")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    stopping_alpha = forms.FloatField(
        min_value=0.0001,
        max_value=0.5,
        initial=0.05,
        required=False,
        label="stopping rule α",
        help_text="waves: the chance of ever stating a wrong ordering",
    )
    stopping_labels_per_arm = forms.IntegerField(
        min_value=1,
        max_value=1_000_000,
        required=False,
        label="stopping rule tuned for (labels per arm)",
        help_text="empty: the batch's sample per arm",
    )

    def plan(self) -> dict:
        d = self.cleaned_data
        return {
            "metrics": d["metrics"],
            "abstain_rule": d["abstain_rule"],
            "bootstrap": {"resamples": d["resamples"], "confidence_level": d["confidence_level"]},
            "ece_bins": d["ece_bins"],
            "seed": d["seed"],
            "exclusions": {
                "evaluators": _list(d["exclude_evaluators"]),
                "trace_ids": _list(d["exclude_trace_ids"]),
            },
            "notes": d["notes"],
            "stopping": {
                "alpha": 0.05 if d.get("stopping_alpha") is None else d["stopping_alpha"],
                "labels_per_arm": d.get("stopping_labels_per_arm"),
            },
        }


class UnblindForm(forms.Form):
    confirm = forms.CharField(label="Type the audit's slug to confirm", max_length=64)
