"""Blinding, tested like security: walk everything a clinician can reach and look for leaks.

Database ids are pushed to distinctive 7-digit ranges first, so a leaked id cannot hide among
positions and counts. Bodies, headers and every URL found in them are searched for condition
names, blind codes, trace and question external ids, database ids, other annotators' labels,
and for the names of fields that must never reach a clinician.
"""

import json
import re
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest
from django.db import connection
from scipy import stats

from annotations.models import (
    AssignmentItem,
    Audit,
    BatchItem,
    Condition,
    Label,
    Question,
    Step,
    Trace,
)
from annotations.services.batches import batch_assign, batch_build
from annotations.services.labels import label_save

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "traces.jsonl"
ID_STARTS = {
    "annotations_question": 3_890_000,
    "annotations_trace": 5_210_000,
    "annotations_step": 7_340_000,
    "annotations_batchitem": 6_120_000,
    "annotations_assignmentitem": 4_470_000,
    "annotations_label": 2_980_000,
    "annotations_condition": 1_730_000,
    "annotations_batch": 8_610_000,
    "annotations_assignment": 9_150_000,
}
OTHER_COMMENT = "zebra-other-annotator-comment"
# The internal name may state the hypothesis; clinicians see the annotator-facing title only.
AUDIT_NAME = "Leak audit: distillation hurts steps"
# Keys a clinician's JSON may carry; anything else is a leak until reviewed.
ALLOWED_KEYS = {
    "id",
    "title",
    "kind",
    "total",
    "done",
    "due_date",
    "submitted",
    "first_open_position",
    "probe_pending",
    "available",
    "answered",
    "guess",
    "items",
    "position",
    "verdict",
    "assignment",
    "question",
    "options",
    "key",
    "text",
    "context",
    "context_cut",
    "step_number",
    "step",
    "trace",
    "final_answer",
    "error_categories",
    "guidelines",
    "probe_options",
    "likert_items",
    "locked",
    "label",
    "rating",
    "error_category",
    "comment",
    "probe_guess",
    "elapsed_ms",
    "revision",
    "next",
    "answers",
    "min",
    "max",
    "min_label",
    "max_label",
    "urls",
    "api",
    "assignment_api",
    "submit_api",
    "page",
    "list",
    "code",
    "message",
    "extra",
    # issue 13, reviewed: the clinician's own skip and flag, and counts of their own work
    "flagged",
    "flag_note",
    "skipped",
    "n_skipped",
    "labelled",
    # issue 13, reviewed: the labelling mode (the same for every arm) and the trace page's
    # own fields: the trace's number in the clinician's order, its steps, their own mark
    "mode",
    "number",
    "n_traces",
    "traces_done",
    "steps",
    "mark",
    "first_error",
    "cannot_assess",  # the clinician's own "I can't assess this trace"
    "trace_api",
    "first_error_api",
    "item_api",
}
# Django's CSRF token is 64 random letters and digits, new on every page: about one page in
# ten thousand spells "gold" in it by chance. It is no field of ours, so the word check skips it.
_CSRF_VALUE = re.compile(r'(name="csrfmiddlewaretoken" value=")[A-Za-z0-9]+(")')


def _without_csrf_tokens(body: str) -> str:
    return _CSRF_VALUE.sub(r"\1\2", body)


FORBIDDEN_WORDS = (
    "stratum",
    "inclusion",
    "gold",
    "reference_verdict",
    "blind_code",
    "external_id",
    "trace_id",
    "step_id",
    "public_id",
    "is_hidden_repeat",
    "repeat_of",
    "batch_item",
    "annotator",
    "condition",
    "judge_",
    "judgeverdict",
    "seed",
)


def _bump_sequences() -> None:
    with connection.cursor() as cursor:
        for table, start in ID_STARTS.items():
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [start]
                )
            else:
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, start]
                )


@pytest.fixture
def leak_setup(db, clinician, other_clinician, admin_user, request):
    """The leak audit, one batch in the labelling mode of ``request.param`` (default:
    shuffled steps), the other clinician's work all done, ours partly."""
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file

    _bump_sequences()
    audit = audit_create(slug="leak-test", name=AUDIT_NAME)
    Audit.objects.filter(pk=audit.pk).update(blinding_seed="e" * 64, hidden_repeat_share=0.1)
    audit.refresh_from_db()
    import_file(audit=audit, path=EXAMPLES, segmenter_names=["given"])
    # The probe on every second label form, with neutral labels mapped to the arms.
    audit.probe_arms = [
        {"label": f"Source {n}", "condition": name}
        for n, name in enumerate(audit.conditions.order_by("pk").values_list("name", flat=True), 1)
    ]
    audit.probe_mode, audit.probe_every = "every", 2
    audit.save(update_fields=["probe_arms", "probe_mode", "probe_every"])
    _import_answer_only_samples(audit)
    mode = getattr(request, "param", "steps")
    if mode != "steps":
        _leak_setup_traces(audit, mode, clinician, other_clinician, admin_user)
        batch = audit.batches.get()
        mine, theirs = batch.assignments.order_by("annotator__username")
        return audit, batch, mine, theirs
    batch = batch_build(
        audit=audit,
        name="teacher-vs-student",
        size=30,
        segmentation="given",
        overlap=2,
        gold=3,
        stratify_by=["answer_correct"],
        created_by=admin_user,
    )
    mine, theirs = batch_assign(batch=batch, annotators=[clinician, other_clinician])
    # the other clinician labels everything, with a recognisable comment
    for item in theirs.items.all():
        label_save(
            annotator=other_clinician,
            assignment_public_id=theirs.public_id,
            position=item.position,
            verdict="error",
            error_category="other",
            comment=OTHER_COMMENT,
        )
    # our clinician labels a few
    for position in (1, 2, 3):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
            comment="mine",
        )
    return audit, batch, mine, theirs


def _leak_setup_traces(audit, mode, clinician, other_clinician, admin_user) -> None:
    """The trace modes: whole traces, the other clinician's labels (trace) or marks
    (first-error) all given with the recognisable comment, a few of ours."""
    from annotations.selectors.access import assignment_trace_numbers
    from annotations.services.first_error import first_error_mark

    batch = batch_build(
        audit=audit,
        name="teacher-vs-student",
        size=6,
        segmentation="given",
        overlap=2,
        stratify_by=["answer_correct"],
        created_by=admin_user,
        mode=mode,
    )
    mine, theirs = batch_assign(batch=batch, annotators=[clinician, other_clinician])
    if mode == "first_error":
        for number in range(1, len(assignment_trace_numbers(assignment=theirs)) + 1):
            first_error_mark(
                annotator=other_clinician,
                assignment_public_id=theirs.public_id,
                trace_number=number,
                first_error=1,
                comment=OTHER_COMMENT,
            )
        first_error_mark(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            trace_number=1,
            first_error=None,
            comment="mine",
        )
        return
    for item in theirs.items.all():
        label_save(
            annotator=other_clinician,
            assignment_public_id=theirs.public_id,
            position=item.position,
            verdict="error",
            error_category="other",
            comment=OTHER_COMMENT,
        )
    for position in (1, 2, 3):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
            comment="mine",
        )


# Issue 17: answer-only samples of the same questions and arms, whose text must never reach a
# clinician (a sample is never a step, so it is in no batch, item or context).
SAMPLE_TEXT = "zebra-answer-only-sample"


def _import_answer_only_samples(audit) -> None:
    import tempfile

    from annotations.services.imports import import_file

    traces = Trace.objects.filter(audit=audit).values_list(
        "question__external_id", "condition__name"
    )
    records = [
        {
            "record_type": "answer",
            "question_id": question_id,
            "condition": condition,
            "sample_index": 10 + i,
            "final_answer": "A",
            "confidence": 0.5,
            "trace": f"{SAMPLE_TEXT} {question_id} {condition} {i}",
        }
        for question_id, condition in sorted(set(traces))
        for i in range(3)
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    import_file(audit=audit, path=Path(handle.name))
    Path(handle.name).unlink()


def _secrets(audit) -> dict[str, list[str]]:
    """Every string whose appearance would be a leak, by kind."""
    return {
        "condition name": list(
            Condition.objects.filter(audit=audit).values_list("name", flat=True)
        ),
        "blind code": list(
            Condition.objects.filter(audit=audit).values_list("blind_code", flat=True)
        ),
        "trace external id": list(
            Trace.objects.filter(audit=audit).values_list("external_id", flat=True)
        ),
        "question external id": list(
            Question.objects.filter(audit=audit).values_list("external_id", flat=True)
        ),
        "step public id": list(
            Step.objects.filter(audit=audit).values_list("public_id", flat=True)
        ),
        "other's comment": [OTHER_COMMENT],
        "answer-only sample text": [SAMPLE_TEXT],
        "batch name": ["teacher-vs-student"],
        "audit name": [AUDIT_NAME, "distillation"],
        "audit slug": [audit.slug],
        "seed": [audit.blinding_seed],
    }


def _contains(text: str, value: str) -> bool:
    # Whole tokens only: "q10" inside a random CSRF token is not a leak.
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", text) is not None


def _database_ids(audit) -> dict[str, set[str]]:
    ids = {
        "step id": Step.objects.filter(audit=audit).values_list("pk", flat=True),
        "trace id": Trace.objects.filter(audit=audit).values_list("pk", flat=True),
        "question id": Question.objects.filter(audit=audit).values_list("pk", flat=True),
        "condition id": Condition.objects.filter(audit=audit).values_list("pk", flat=True),
        "batch item id": BatchItem.objects.values_list("pk", flat=True),
        "assignment item id": AssignmentItem.objects.values_list("pk", flat=True),
        "label id": Label.objects.values_list("pk", flat=True),
    }
    return {kind: {str(pk) for pk in pks} for kind, pks in ids.items()}


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            self.attributes.append((name, value or ""))
            if name in ("href", "src", "action") and value:
                self.urls.append(value)


def _json_keys(value, keys: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            _json_keys(v, keys)
    elif isinstance(value, list):
        for v in value:
            _json_keys(v, keys)
    return keys


def _crawl(client, mine) -> dict[str, tuple[int, str, dict]]:
    """Every page and JSON endpoint a clinician can reach for this assignment, and every
    same-site link found on the way."""
    seen: dict[str, tuple[int, str, dict]] = {}
    queue = [
        "/",
        "/my/",
        f"/my/{mine.public_id}/",
        "/api/my/assignments/",
        f"/api/my/assignments/{mine.public_id}/",
        f"/api/my/assignments/{mine.public_id}/next/",
    ]
    total = mine.items.count()
    for position in range(1, total + 1):
        queue.append(f"/my/{mine.public_id}/{position}/")
        queue.append(f"/api/my/assignments/{mine.public_id}/items/{position}/")
    if mine.batch.mode != "steps":
        from annotations.selectors.access import assignment_trace_numbers

        for number in range(1, len(assignment_trace_numbers(assignment=mine)) + 1):
            queue.append(f"/my/{mine.public_id}/trace/{number}/")
            queue.append(f"/api/my/assignments/{mine.public_id}/traces/{number}/")
    while queue:
        url = queue.pop(0)
        if url in seen or not url.startswith("/") or url.startswith("/static/"):
            continue
        response = client.get(url)
        body = response.content.decode()
        seen[url] = (response.status_code, body, dict(response.headers))
        if response.status_code in (301, 302):
            queue.append(response["Location"])
        if "html" in response.get("Content-Type", ""):
            parser = _Links()
            parser.feed(body)
            queue.extend(u for u in parser.urls if u.startswith("/") and "logout" not in u)
    return seen


def _crawl_saves(client, mine) -> dict[str, tuple[int, str, dict]]:
    """The combined "save & next" answers: every item saved in both modes, so every item is
    handed out as a ``next`` at least once (revising: the following position)."""
    seen: dict[str, tuple[int, str, dict]] = {}
    total = mine.items.count()
    if mine.batch.mode == "first_error":
        from annotations.selectors.access import assignment_trace_numbers

        for number in range(1, len(assignment_trace_numbers(assignment=mine)) + 1):
            url = f"/api/my/assignments/{mine.public_id}/traces/{number}/first-error/"
            for mark in (2, None):
                response = client.put(url, {"first_error": mark}, content_type="application/json")
                seen[f"{url}#{mark}"] = (
                    response.status_code,
                    response.content.decode(),
                    dict(response.headers),
                )
        return seen
    for mode in ("unlabelled", "following"):
        for position in range(1, total + 1):
            url = f"/api/my/assignments/{mine.public_id}/items/{position}/label/?next={mode}"
            response = client.put(url, {"verdict": "correct"}, content_type="application/json")
            seen[url] = (response.status_code, response.content.decode(), dict(response.headers))
    return seen


@pytest.mark.parametrize(
    "leak_setup", ["steps", "trace", "first_error"], indirect=True, ids=lambda m: f"mode={m}"
)
def test_nothing_a_clinician_can_fetch_reveals_the_source(client, leak_setup, clinician):
    # given (in every labelling mode)
    audit, _, mine, _ = leak_setup
    client.force_login(clinician)
    secrets = _secrets(audit)
    database_ids = _database_ids(audit)
    # when
    pages = _crawl(client, mine)
    saves = _crawl_saves(client, mine)
    pages.update(saves)
    # then
    if mine.batch.mode == "steps":
        assert len(pages) >= 4 * mine.items.count()
        nexts = [json.loads(body)["next"] for _, body, _ in saves.values()]
        # every item but the first is handed out as a "next" (the first is crawled above)
        assert {n["position"] for n in nexts if n} == set(range(2, mine.items.count() + 1))
        item_keys = set(json.loads(pages[f"/api/my/assignments/{mine.public_id}/items/1/"][1]))
        assert all(set(n) == item_keys for n in nexts if n)
    else:
        # every trace page and trace answer was read, and every save answered
        traces = [u for u in pages if re.search(r"/traces?/\d+/$", u)]
        assert len(traces) >= 2 * 3
        assert all(status == 200 for status, _, _ in saves.values())
    problems = []
    for url, (status, body, headers) in pages.items():
        assert status in (200, 204, 302), (url, status)
        haystacks = {"url": url, "body": body, "headers": json.dumps(headers)}
        for where, text in haystacks.items():
            for kind, values in secrets.items():
                problems += [
                    f"{kind} {v!r} in {where} of {url}" for v in values if _contains(text, v)
                ]
            numbers = set(re.findall(r"\d{7}", text))
            for kind, ids in database_ids.items():
                problems += [f"{kind} {n} in {where} of {url}" for n in numbers & ids]
        lowered = _without_csrf_tokens(body).lower()
        problems += [f"word {w!r} in {url}" for w in FORBIDDEN_WORDS if w in lowered]
        payloads = []
        if url.startswith("/api/") and body:
            payloads.append(json.loads(body))
            if mine.batch.mode != "steps" and "/traces/" in url:
                # the trace answer: the whole trace, no step numbers (the audit hides them)
                trace = json.loads(body)
                problems += [
                    f"step number in {url}" for s in trace["steps"] if s["step_number"] is not None
                ]
        match = re.search(
            r'<script id="(?:item|trace)-data" type="application/json">(.*?)</script>', body, re.S
        )
        if match:
            payloads.append(json.loads(match.group(1)))
        for payload in payloads:
            unknown = _json_keys(payload, set()) - ALLOWED_KEYS
            problems += [f"unexpected key {k!r} in {url}" for k in sorted(unknown)]
        if "html" in headers.get("Content-Type", ""):
            parser = _Links()
            parser.feed(body)
            for name, _value in parser.attributes:
                if name.startswith("data-") and name not in {
                    "data-kind",
                    "data-key",
                    "data-verdict",
                    "data-done",
                    "data-total",
                    "data-field",
                    # the trace page: its mode, each step's place on the page (own order)
                    "data-mode",
                    "data-position",
                    "data-index",
                    "data-mark",
                }:
                    problems.append(f"attribute {name} in {url}")
    assert problems == []


def test_others_labels_never_show_on_shared_items(client, leak_setup, clinician):
    # given every item is also labelled "error" by the other clinician
    _, _, mine, _ = leak_setup
    client.force_login(clinician)
    # when / then: items our clinician has not labelled carry no label at all
    for position in range(4, mine.items.count() + 1):
        item = client.get(f"/api/my/assignments/{mine.public_id}/items/{position}/").json()
        assert item["label"] is None
    overview = client.get(f"/api/my/assignments/{mine.public_id}/").json()
    assert [e["verdict"] for e in overview["items"][:3]] == ["correct"] * 3
    assert {e["verdict"] for e in overview["items"][3:]} == {""}


def test_gold_items_and_hidden_repeats_look_like_any_other(client, leak_setup, clinician):
    _, _, mine, _ = leak_setup
    client.force_login(clinician)
    shapes = set()
    for item in mine.items.all():
        data = client.get(f"/api/my/assignments/{mine.public_id}/items/{item.position}/").json()
        shapes.add(tuple(sorted(data)))
    assert len(shapes) == 1
    assert mine.items.filter(is_hidden_repeat=True).exists()
    assert mine.items.filter(batch_item__is_gold=True).exists()


def test_other_clinicians_assignment_is_404_everywhere(client, leak_setup, clinician):
    _, _, _, theirs = leak_setup
    client.force_login(clinician)
    urls = [
        f"/my/{theirs.public_id}/",
        f"/my/{theirs.public_id}/1/",
        f"/api/my/assignments/{theirs.public_id}/",
        f"/api/my/assignments/{theirs.public_id}/next/",
        f"/api/my/assignments/{theirs.public_id}/items/1/",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404, url
        assert OTHER_COMMENT not in response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/audits/leak-test/batches/",
        "/api/audits/",
        "/api/audits/leak-test/progress/",
        "/api/batches/1/progress/",
    ],
)
def test_staff_pages_are_closed_to_clinicians(client, leak_setup, clinician, url):
    client.force_login(clinician)
    response = client.get(url)
    assert response.status_code in (302, 403, 404)
    assert "teacher" not in response.content.decode()


def test_two_clinicians_see_different_orders(leak_setup):
    _, _, mine, theirs = leak_setup
    order = lambda a: list(  # noqa: E731
        a.items.filter(is_hidden_repeat=False, batch_item__is_gold=False)
        .order_by("position")
        .values_list("batch_item__step_id", flat=True)
    )
    assert sorted(order(mine)) == sorted(order(theirs))
    assert order(mine) != order(theirs)


def test_order_and_categories_do_not_follow_the_condition(client, seeded_audit, clinician):
    # given twenty clinicians, each with the same 60 steps in their own order
    from annotations.roles import Role
    from annotations.services.users import user_create_or_update

    others = [
        user_create_or_update(username=f"reader{i}", role=Role.CLINICIAN, password="x" * 12)
        for i in range(19)
    ]
    batch = batch_build(audit=seeded_audit, name="order", size=60, segmentation="given", overlap=20)
    assignments = batch_assign(batch=batch, annotators=[clinician, *others])
    # when
    p_values, longest_runs = [], []
    for assignment in assignments:
        rows = list(
            assignment.items.order_by("position").values_list(
                "position", "batch_item__step__trace__condition__name"
            )
        )
        groups: dict[str, list[int]] = {}
        for position, condition in rows:
            groups.setdefault(condition, []).append(position)
        p_values.append(stats.kruskal(*groups.values()).pvalue)
        longest = run = 1
        for (_, a), (_, b) in pairwise(rows):
            run = run + 1 if a == b else 1
            longest = max(longest, run)
        longest_runs.append(longest)
    # then positions do not follow the condition (Kruskal–Wallis per order: about 5% of
    # orders fall under 0.05 by chance; five or more of twenty would happen 0.3% of the time)
    assert sum(p < 0.05 for p in p_values) < 5
    assert min(p_values) > 1e-4
    assert max(longest_runs) < 12
    # and every item offers the same categories, in the same order
    mine = assignments[0]
    client.force_login(clinician)
    categories = {
        tuple(
            client.get(f"/api/my/assignments/{mine.public_id}/items/{p}/").json()[
                "error_categories"
            ]
        )
        for p in range(1, 61)
    }
    assert len(categories) == 1


# --- participant studies: enrolment, consent, practice, items, completion (issue 12) ---------
STUDY_CONSENT = "You will rate short texts; you may stop at any time."
STUDY_CHECK = "Please choose 5 and then 1 for this item."


@pytest.fixture
def study_leak_setup(db, admin_user):
    """A trace-rating audit whose names state the hypothesis, on a link with practice, an
    attention check, a questionnaire and a completion code."""
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file
    from studies.services.setup import study_configure, study_link_create

    _bump_sequences()
    audit = audit_create(
        slug="leak-study",
        name=AUDIT_NAME,
        kind=Audit.Kind.TRACE_RATINGS,
        likert_items=[
            {"key": "clarity", "label": "How clear is it?", "min": 1, "max": 5},
            {"key": "effort", "label": "How much effort?", "min": 1, "max": 5},
        ],
    )
    Audit.objects.filter(pk=audit.pk).update(blinding_seed="d" * 64)
    audit.refresh_from_db()
    import_file(audit=audit, path=EXAMPLES, segmenter_names=["given"])
    types = ("teacher-style", "student-style")  # trace types named like the arms, on purpose
    for i, trace in enumerate(Trace.objects.filter(audit=audit).order_by("pk")):
        trace.trace_type = types[i % 2]
        trace.save(update_fields=["trace_type"])
    batch = batch_build(
        audit=audit,
        name="teacher-vs-student",
        size=8,
        segmentation="given",
        stratify_by=["trace_type"],
        created_by=admin_user,
    )
    study_configure(
        audit=audit,
        settings={
            "consent": STUDY_CONSENT,
            "instructions": "Rate each text.",
            "practice": [
                {"text": "Practice text.", "answers": {"clarity": 5}, "feedback": "Clear."}
            ],
            "attention_checks": [
                {"position": 3, "text": STUDY_CHECK, "answers": {"clarity": 5, "effort": 1}}
            ],
            "questionnaire": [{"key": "remarks", "text": "Remarks?", "kind": "text"}],
        },
    )
    link = study_link_create(
        audit=audit, batch=batch, capacity=5, completion_code="FINISHED7", created_by=admin_user
    )
    return audit, batch, link


def _study_walk(client, link) -> dict[str, tuple[int, str, dict]]:
    """Every page a participant sees, from the link to the completion code, with every POST's
    answer and every same-site URL found on the way (each fetched too)."""
    seen: dict[str, tuple[int, str, dict]] = {}

    def keep(label: str, response) -> None:
        seen[label] = (response.status_code, response.content.decode(), dict(response.headers))
        if "html" in response.get("Content-Type", ""):
            parser = _Links()
            parser.feed(response.content.decode())
            for url in parser.urls:
                if url.startswith("/") and not url.startswith("/static/") and url not in seen:
                    seen[url] = None  # fetched below

    token = link.token
    keep("entry", client.get(f"/s/{token}/?PROLIFIC_PID=leak1"))
    response = client.post(f"/s/{token}/consent/", {"platform_id": "leak1", "decision": "accept"})
    keep("consent POST", response)
    for _ in range(40):
        response = client.get(
            response["Location"] if response.status_code == 302 else f"/s/{token}/go/"
        )
        if response.status_code == 302:
            continue
        path = response.wsgi_request.path
        keep(path, response)
        if path.endswith("/done/"):
            break
        answers = {"likert-clarity": "5", "likert-effort": "1", "shown_at": "0"}
        if path.endswith("/questionnaire/"):
            answers = {"q-remarks": "none"}
        posted = client.post(path, answers)
        keep(f"{path} POST", posted)
        response = posted if posted.status_code == 302 else client.get(f"/s/{token}/go/")
    for url in [u for u, v in seen.items() if v is None]:
        keep(url, client.get(url))
    # what someone else finds: the declined page and a reopened link
    other = type(client)()
    other.get(f"/s/{token}/?PROLIFIC_PID=leak2")
    keep(
        "declined",
        other.post(f"/s/{token}/consent/", {"platform_id": "leak2", "decision": "decline"}),
    )
    keep("reopened", client.get(f"/s/{token}/?PROLIFIC_PID=leak1", follow=True))
    return seen


def test_nothing_a_study_participant_sees_reveals_the_source(client, study_leak_setup):
    # given
    audit, _, link = study_leak_setup
    secrets = _secrets(audit)
    secrets["trace type"] = ["teacher-style", "student-style"]
    database_ids = _database_ids(audit)
    # when a participant goes through the whole study
    pages = _study_walk(client, link)
    # then every page was reached: consent, practice feedback, the items, the check, the code
    bodies = "\n".join(body for _, body, _ in pages.values())
    assert STUDY_CONSENT in bodies and "Clear." in bodies and STUDY_CHECK in bodies
    assert "FINISHED7" in bodies and "Nothing about you was kept" in bodies
    items = [label for label in pages if "/items/" in label and "POST" not in label]
    assert len(items) == 9  # 8 traces and the attention check
    problems = []
    for label, (status, body, headers) in pages.items():
        assert status in (200, 302), (label, status)
        for where, text in {"url": label, "body": body, "headers": json.dumps(headers)}.items():
            for kind, values in secrets.items():
                problems += [
                    f"{kind} {v!r} in {where} of {label}" for v in values if _contains(text, v)
                ]
            numbers = set(re.findall(r"(?<!\d)\d{7}(?!\d)", text))
            for kind, ids in database_ids.items():
                problems += [f"{kind} {n} in {where} of {label}" for n in numbers & ids]
        lowered = _without_csrf_tokens(body).lower()
        problems += [f"word {w!r} in {label}" for w in FORBIDDEN_WORDS if w in lowered]
        # the participant's own account name and assignment handle stay off the pages too
        participant = link.participants.first()
        for value in (participant.user.username, participant.assignment.public_id):
            if _contains(body, value):
                problems.append(f"account handle {value!r} in {label}")
    assert problems == []


# --- step-label studies: the labelling page reached through a study link (issue 12) ---------
STEP_PRACTICE = "Practice step: two and two make five."


@pytest.fixture
def step_study_leak_setup(db, admin_user):
    """A step-label audit whose names state the hypothesis, on a study link whose batch has
    gold items for its two attention checks."""
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file
    from studies.services.setup import study_configure, study_link_create

    _bump_sequences()
    audit = audit_create(slug="leak-step-study", name=AUDIT_NAME)
    Audit.objects.filter(pk=audit.pk).update(blinding_seed="e" * 64)
    audit.refresh_from_db()
    import_file(audit=audit, path=EXAMPLES, segmenter_names=["given"])
    batch = batch_build(
        audit=audit,
        name="teacher-vs-student",
        size=6,
        segmentation="given",
        gold=2,
        created_by=admin_user,
    )
    study_configure(
        audit=audit,
        settings={
            "consent": STUDY_CONSENT,
            "instructions": "Judge each step.",
            "practice": [{"text": STEP_PRACTICE, "verdict": "error", "feedback": "It is four."}],
            "attention_checks": [{"position": 2}, {"position": 6}],
            "questionnaire": [{"key": "remarks", "text": "Remarks?", "kind": "text"}],
        },
    )
    link = study_link_create(
        audit=audit, batch=batch, capacity=5, completion_code="FINISHED8", created_by=admin_user
    )
    return audit, batch, link


def test_nothing_a_step_study_participant_sees_reveals_the_source(client, step_study_leak_setup):
    # given
    audit, _, link = step_study_leak_setup
    secrets = _secrets(audit)
    database_ids = _database_ids(audit)
    token = link.token
    pages: dict[str, tuple[int, str, dict]] = {}

    def keep(label, response):
        pages[label] = (response.status_code, response.content.decode(), dict(response.headers))
        return response

    # when a participant consents, practises, labels every step on the page, submits, answers
    # the questionnaire and gets the code
    keep("entry", client.get(f"/s/{token}/?PROLIFIC_PID=leak1"))
    keep(
        "consent",
        client.post(f"/s/{token}/consent/", {"platform_id": "leak1", "decision": "accept"}),
    )
    keep("instructions", client.get(f"/s/{token}/instructions/"))
    keep("instructions POST", client.post(f"/s/{token}/instructions/"))
    keep("practice", client.get(f"/s/{token}/practice/1/"))
    keep("feedback", client.post(f"/s/{token}/practice/1/", {"likert-verdict": "correct"}))
    participant = link.participants.get()
    mine = participant.assignment
    keep("steps", client.get(f"/s/{token}/steps/"))
    for position in range(1, mine.items.count() + 1):
        keep(f"/s/{token}/steps/{position}/", client.get(f"/s/{token}/steps/{position}/"))
    pages.update(_crawl(client, mine))
    pages.update(_crawl_saves(client, mine))
    keep("submit", client.post(f"/api/my/assignments/{mine.public_id}/submit/"))
    keep("after submit", client.get(f"/s/{token}/go/", follow=True))
    keep("questionnaire POST", client.post(f"/s/{token}/questionnaire/", {"q-remarks": "none"}))
    keep("done", client.get(f"/s/{token}/done/"))
    other = type(client)()
    other.get(f"/s/{token}/?PROLIFIC_PID=leak2")
    keep(
        "declined",
        other.post(f"/s/{token}/consent/", {"platform_id": "leak2", "decision": "decline"}),
    )
    keep("reopened", client.get(f"/s/{token}/?PROLIFIC_PID=leak1", follow=True))
    # then every stage was reached
    bodies = "\n".join(body for _, body, _ in pages.values())
    assert STUDY_CONSENT in bodies and "It is four." in bodies and "FINISHED8" in bodies
    assert "Nothing about you was kept" in bodies
    assert sum('id="label-app"' in body for _, body, _ in pages.values()) >= mine.items.count()
    participant.refresh_from_db()
    assert participant.completed_at is not None
    problems = []
    for label, (status, body, headers) in pages.items():
        assert status in (200, 204, 302), (label, status)
        for where, text in {"url": label, "body": body, "headers": json.dumps(headers)}.items():
            for kind, values in secrets.items():
                problems += [
                    f"{kind} {v!r} in {where} of {label}" for v in values if _contains(text, v)
                ]
            numbers = set(re.findall(r"(?<!\d)\d{7}(?!\d)", text))
            for kind, ids in database_ids.items():
                problems += [f"{kind} {n} in {where} of {label}" for n in numbers & ids]
        lowered = _without_csrf_tokens(body).lower()
        problems += [f"word {w!r} in {label}" for w in FORBIDDEN_WORDS if w in lowered]
        match = re.search(
            r'<script id="item-data" type="application/json">(.*?)</script>', body, re.S
        )
        payloads = [json.loads(match.group(1))] if match else []
        if label.startswith("/api/") and body:
            payloads.append(json.loads(body))
        for payload in payloads:
            unknown = _json_keys(payload, set()) - ALLOWED_KEYS
            problems += [f"unexpected key {k!r} in {label}" for k in sorted(unknown)]
        # the account name never shows (the assignment's handle is in the page's API URLs,
        # as for clinicians)
        if _contains(body, participant.user.username):
            problems.append(f"account name in {label}")
    assert problems == []


def test_the_word_check_skips_only_the_csrf_token(client, clinician):
    # given a page a clinician sees, with Django's per-page CSRF token in its sign-out form
    client.force_login(clinician)
    body = client.get("/my/").content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"', body)
    assert tokens and all(len(t) == 64 for t in tokens)
    # when / then the check reads the page without the token values, and nothing else changes
    stripped = _without_csrf_tokens(body)
    for token in tokens:
        body = body.replace(token, "", 1)
    assert stripped == body
