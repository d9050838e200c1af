from django import forms

from judges.selectors import audit_segmentations, judge_list


class RunStartForm(forms.Form):
    judge = forms.ChoiceField(choices=())
    segmentation = forms.ChoiceField(choices=(), required=False)
    batch = forms.CharField(
        max_length=120, required=False, help_text="Only the steps of this batch (its name)."
    )

    def __init__(self, *args, audit, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["judge"].choices = [(j.name, j.name) for j in judge_list()]
        self.fields["segmentation"].choices = [("", "all segmentations")] + [
            (s, s) for s in audit_segmentations(audit)
        ]
