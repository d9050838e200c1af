from django import forms

from annotations.services.segmenters import SEGMENTER_NAMES


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL or CSV, one trace per record (see docs/formats.md).")
    segmenters = forms.MultipleChoiceField(
        choices=[(name, name) for name in SEGMENTER_NAMES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: 'given' when every record has steps, else 'paragraphs'.",
    )
    skip_existing = forms.BooleanField(
        required=False, help_text="Leave out trace ids already imported."
    )
