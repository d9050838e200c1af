"""Two arms, same claims, two styles: does the arm still show through the blinded text?

The fixture (tests/annotations/fixtures/styled_arms.py) is imported twice — once under norm-v1,
once under norm-v2 — and the report's own blinding classifier
(auditapp.agreement.blinding.blinding_check: word and character n-grams, question-grouped
cross-validation) is asked to tell the arms apart from the raw step text, v1's and v2's.

Measured on this fixture (60 questions, 600 paragraph and 960 sentence steps; AUC with its
bootstrap interval, rng seed 0):

    paragraphs   raw 0.998 [0.996, 1.000]   v1 0.985 [0.975, 0.992]   v2 0.500 [0.500, 0.500]
    sentences    raw 0.994 [0.989, 0.999]   v1 0.974 [0.963, 0.985]   v2 0.561 [0.551, 0.575]

Bounds asserted: v2 ≤ 0.60 on paragraphs and ≤ 0.65 on sentences (five seeds gave 0.500 and
0.559–0.567), at least 0.3 below both raw and v1; raw and v1 ≥ 0.9, so the fixture does leak.
What is left on sentence steps is not style the normaliser sees: the sentence segmenter does not
cut before a markdown marker ("mmol/L.\\n> Wait", "injury. *A raised"), so the verbose arm's
sentence steps are longer (45 vs 31 characters), and a filler-only sentence ("Okay, let me
see.") blinds to an empty step (42 of them, all in the verbose arm).
"""

import re

import numpy as np
import pytest

from annotations.models import Audit, Step, Trace
from annotations.selectors.blinded import item_get_blinded
from annotations.services.audits import audit_create
from annotations.services.batches import batch_assign, batch_build
from annotations.services.imports import import_file
from annotations.services.normalise import NORMALISER_V1, NORMALISER_V2
from auditapp.agreement.blinding import blinding_check
from tests.annotations.fixtures.styled_arms import styled_jsonl

SEGMENTATIONS = ("paragraphs", "sentences")
# Every tell issue 11 lists, as a pattern that must not match what an annotator is shown.
TELLS = {
    "emphasis markers": r"\*|__|~~",
    "LaTeX command or math delimiter": r"\\[A-Za-z]+|\$|\\\(|\\\[",
    "boxed answer": r"boxed",
    "emoji": "[✅❌👉]",
    "filler or self-correction": (
        r"\b(?:Okay|Alright|Hmm|Wait|Hold on|Let me (?:see|double-check|think)|But wait"
        r"|Actually|Well)\b,?"
    ),
    "final-answer heading": r"(?i)final answer",
    "quote marker": r"(?:^|\s)>\s",
    "think tag": r"</?think>",
    "numbering": r"^\d+\.\s",
    "answer label": r"^Answer:",
    "code": "`",
}


@pytest.fixture
def styled_audits(db, tmp_path):
    path = styled_jsonl(tmp_path / "styled.jsonl")
    audits = {}
    for version in (NORMALISER_V1, NORMALISER_V2):
        audit = audit_create(
            slug=f"styled-{version}",
            name="Styled arms",
            normaliser_version=version,
            show_final_answer=True,
        )
        import_file(audit=audit, path=path, segmenter_names=list(SEGMENTATIONS))
        audits[version] = audit
    return audits


def _auc(audit: Audit, segmentation: str, field: str) -> tuple[float, float, float]:
    rows = list(
        Step.objects.filter(audit=audit, segmentation=segmentation)
        .order_by("pk")
        .values_list(field, "trace__condition__name", "trace__question__external_id")
    )
    check = blinding_check(
        [r[0] for r in rows],
        [r[1] for r in rows],
        groups=[r[2] for r in rows],
        rng=np.random.default_rng(0),
        resamples=200,
    )
    return check.auc, check.ci_low, check.ci_high


def test_v2_takes_the_classifier_from_certain_to_chance(styled_audits):
    # when
    figures = {}
    for segmentation in SEGMENTATIONS:
        figures[segmentation] = {
            "raw": _auc(styled_audits[NORMALISER_V2], segmentation, "text"),
            "v1": _auc(styled_audits[NORMALISER_V1], segmentation, "blinded_text"),
            "v2": _auc(styled_audits[NORMALISER_V2], segmentation, "blinded_text"),
        }
    for segmentation, row in figures.items():
        print(
            segmentation,
            "  ".join(f"{k} {a:.3f} [{lo:.3f}, {hi:.3f}]" for k, (a, lo, hi) in row.items()),
        )
    # then
    bound = {"paragraphs": 0.60, "sentences": 0.65}
    for segmentation, row in figures.items():
        raw, v1, v2 = row["raw"][0], row["v1"][0], row["v2"][0]
        assert raw >= 0.9 and v1 >= 0.9, "the fixture should leak without v2"
        assert v2 <= bound[segmentation]
        assert v2 <= raw - 0.3 and v2 <= v1 - 0.3


def test_no_listed_tell_reaches_a_clinician(styled_audits, clinician):
    # given: every paragraph step of the v2 audit in one batch, shown with its final answer
    audit = styled_audits[NORMALISER_V2]
    n_steps = Step.objects.filter(audit=audit, segmentation="paragraphs").count()
    batch = batch_build(audit=audit, name="all", size=n_steps, segmentation="paragraphs")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    # when: the clinician opens every item
    shown = []
    for position in assignment.items.order_by("position").values_list("position", flat=True):
        item = item_get_blinded(
            clinician=clinician, assignment_public_id=assignment.public_id, position=position
        )
        shown.extend([item.step, item.final_answer, *item.context])
    # then
    assert len(shown) >= n_steps
    found = {
        name: [text for text in shown if re.search(pattern, text, re.MULTILINE)][:3]
        for name, pattern in TELLS.items()
    }
    assert {name: texts for name, texts in found.items() if texts} == {}
    # and v1 on the same fixture leaks every kind of tell the fixture carries
    v1_texts = list(
        Step.objects.filter(audit=styled_audits[NORMALISER_V1]).values_list(
            "blinded_text", flat=True
        )
    ) + list(
        Trace.objects.filter(audit=styled_audits[NORMALISER_V1]).values_list(
            "blinded_final_answer", flat=True
        )
    )
    v1_found = {
        name for name, pattern in TELLS.items() if any(re.search(pattern, t) for t in v1_texts)
    }
    assert {"LaTeX command or math delimiter", "boxed answer", "emoji"} <= v1_found
    assert {"filler or self-correction", "final-answer heading", "quote marker"} <= v1_found
