"""Shared data of the participant-study tests (tests/studies, the leak crawl, the bench)."""

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
TRACE_TYPES = ("chain-of-thought", "structured", "summary", "worked-example")
LIKERT = [
    {"key": "interpretability", "label": "How easy is this to follow?", "min": 1, "max": 5},
    {"key": "cognitive_load", "label": "How much effort did it take?", "min": 1, "max": 5},
]
CONSENT = "You will rate short texts. Taking part is voluntary; you may stop at any time."
CHECK_TEXT = "Please answer 5 to the first question and 1 to the second for this item."
STUDY_SETTINGS = {
    "consent": CONSENT,
    "instructions": "Rate each text on both questions.",
    "practice": [
        {
            "text": "A short practice text: 2 + 2 = 4 because two and two make four.",
            "answers": {"interpretability": 5},
            "feedback": "This one is very easy to follow.",
        }
    ],
    "attention_checks": [
        {"position": 5, "text": CHECK_TEXT, "answers": {"interpretability": 5, "cognitive_load": 1}}
    ],
    "questionnaire": [
        {"key": "age_band", "text": "Your age", "kind": "choice", "choices": ["18-29", "30+"]},
        {"key": "remarks", "text": "Anything to tell us?", "kind": "text"},
    ],
    "max_attention_failures": 0,
}
COMPLETION_CODE = "C0MPLETE42"


def make_batch(audit, *, name: str, per_type: int):
    """A trace batch with ``per_type`` traces of each type (the design a link draws from)."""
    from annotations.models import Batch, BatchItem, Trace

    batch = Batch.objects.create(audit=audit, name=name, segmentation="given", seed=name)
    items = []
    for trace_type in TRACE_TYPES:
        traces = Trace.objects.filter(audit=audit, trace_type=trace_type).order_by("pk")
        items += [
            BatchItem(batch=batch, trace=t, stratum=trace_type, inclusion_probability=1.0)
            for t in traces[:per_type]
        ]
    BatchItem.objects.bulk_create(items)
    return batch
