from django import forms

from annotations.models import LabellingMode
from annotations.services.import_formats import FILE_FORMATS
from annotations.services.segmenters import SEGMENTER_NAMES
from auditapp.agreement.active import DEFAULT_FLOOR

FORMAT_LABELS = {
    "auto": "Detect from the file",
    "jsonl": "JSONL (StepAudit fields)",
    "csv": "CSV (StepAudit fields)",
    "inspect": "Inspect AI eval log (.eval / .json)",
    "lm-eval": "lm-evaluation-harness --log_samples JSONL",
    "chat": "Chat JSONL (messages; vLLM / OpenAI batch output)",
}


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
    format = forms.ChoiceField(
        choices=[(name, FORMAT_LABELS.get(name, name)) for name in ("auto", *FILE_FORMATS)],
        initial="auto",
        required=False,
    )
    condition = forms.CharField(
        max_length=120,
        required=False,
        help_text="The arm: needed for lm-eval samples; replaces the model's name otherwise.",
    )


class BatchForm(forms.Form):
    name = forms.CharField(max_length=120)
    size = forms.IntegerField(min_value=1, max_value=1_000_000, initial=30)
    segmentation = forms.ChoiceField(choices=())
    overlap = forms.IntegerField(
        min_value=1, max_value=50, initial=2, help_text="Annotators per step."
    )
    seed = forms.CharField(
        max_length=64, required=False, help_text="Empty: the batch name. Same seed, same draw."
    )
    stratify_by = forms.MultipleChoiceField(
        choices=[
            ("answer_correct", "answer correct / wrong"),
            ("trace_type", "trace type"),
            ("context_depth", "what the item shows of the step's place"),
        ],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Always stratified by condition.",
    )
    allocation = forms.ChoiceField(
        choices=[
            ("equal", "equal per condition"),
            ("proportional", "proportional"),
            ("balanced", "balanced: each condition the same in every stratum"),
            ("uncertainty", "by the judge's uncertainty (active design): more where it is unsure"),
        ]
    )
    mode = forms.ChoiceField(
        label="Labelling mode",
        choices=(),
        required=False,
        help_text="Trace modes draw whole traces (size counts traces) and show each trace on "
        "one page: its length and style are visible; no gold items or hidden repeats.",
    )
    gold = forms.IntegerField(min_value=0, initial=0, help_text="Steps with a reference verdict.")
    hidden_repeat_share = forms.FloatField(
        min_value=0, max_value=0.5, initial=0.0, help_text="Share repeated later, unannounced."
    )
    include_batched = forms.BooleanField(
        required=False, help_text="Allow steps already in another batch."
    )
    design = forms.ChoiceField(
        choices=[
            ("stratified", "stratified: a simple random sample per stratum"),
            ("active", "active: probabilities follow the judge's uncertainty"),
            ("stratified-ppi", "stratified PPI: condition × judge verdict, Neyman allocation"),
        ],
        initial="stratified",
        required=False,
        help_text="docs/sampling.md; the planner on a batch's page suggests one.",
    )
    uncertainty = forms.CharField(
        max_length=200,
        required=False,
        help_text="active / stratified PPI: the judge, e.g. judge-runs:12 (or 12,13).",
    )
    floor = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.2,
        required=False,
        help_text="active: the least share of uniform π.",
    )
    waves = forms.IntegerField(
        min_value=1,
        max_value=20,
        initial=1,
        required=False,
        help_text="Release the sample in this many waves (the report's stopping rule).",
    )

    def __init__(self, *args, segmentations: list[str], audit_mode: str = "steps", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segmentation"].choices = [(s, s) for s in segmentations]
        self.fields["mode"].choices = [
            ("", f"the audit's ({LabellingMode(audit_mode).label.lower()})"),
            *LabellingMode.choices,
        ]

    def clean(self):
        data = super().clean()
        # Left empty (or posted by an older page): the services' defaults.
        data["design"] = data.get("design") or "stratified"
        data["floor"] = DEFAULT_FLOOR if data.get("floor") is None else data["floor"]
        data["waves"] = data.get("waves") or 1
        return data


class AssignForm(forms.Form):
    annotators = forms.MultipleChoiceField(choices=(), widget=forms.CheckboxSelectMultiple)
    due_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    confirm_leak = forms.BooleanField(
        required=False,
        label="Assign anyway",
        help_text="The arms can be told apart from what annotators will see; assign anyway "
        "(your confirmation and the figures are recorded on the batch).",
    )

    def __init__(self, *args, clinicians: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotators"].choices = [(c, c) for c in clinicians]


class ReassignForm(forms.Form):
    annotator = forms.ChoiceField(choices=())

    def __init__(self, *args, clinicians: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotator"].choices = [(c, c) for c in clinicians]
