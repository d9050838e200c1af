from django import forms

from judges.models import LabelMode
from judges.selectors import audit_segmentations, judge_list


class RunStartForm(forms.Form):
    judge = forms.ChoiceField(choices=())
    segmentation = forms.ChoiceField(choices=(), required=False)
    batch = forms.CharField(
        max_length=120, required=False, help_text="Only the steps of this batch (its name)."
    )
    label_mode = forms.ChoiceField(
        choices=[("", "the judge's default"), *LabelMode.choices],
        required=False,
        label="Label mode",
        help_text="Each step on its own, or each whole trace's first wrong step.",
    )

    def __init__(self, *args, audit, **kwargs):
        super().__init__(*args, **kwargs)
        # Every version: the latest by its name, older ones exactly as "name@vN" (judge_get).
        choices, seen = [], set()
        for judge in judge_list():  # latest version of each name first
            value = judge.name if judge.name not in seen else f"{judge.name}@v{judge.version}"
            seen.add(judge.name)
            choices.append((value, judge.label))
        self.fields["judge"].choices = choices
        self.fields["segmentation"].choices = [("", "all segmentations")] + [
            (s, s) for s in audit_segmentations(audit)
        ]
