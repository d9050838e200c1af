"""create_audit FILE: the example files, every setting, errors named by path with nothing
created, --update, and the seed that makes a study re-run give the same samples and ids."""

import json
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from annotations.audit_spec import AUDIT_SPEC_FIELDS, AuditSpecSerializer
from annotations.models import Assignment, Audit, BatchItem, Condition, Step
from annotations.services.randomness import audit_secret_from_seed

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"
STEP_AUDIT = EXAMPLES / "audit_steps.yaml"
LIKERT_AUDIT = EXAMPLES / "audit_likert.yaml"


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_the_step_label_example_sets_every_setting_it_names():
    # given the example step-label audit file
    spec = yaml.safe_load(STEP_AUDIT.read_text())
    # when it is created, asking for JSON
    result = json.loads(_run("create_audit", str(STEP_AUDIT), "--json"))
    # then stdout is one JSON object with the new audit's id, and every setting is stored
    audit = Audit.objects.get(pk=result["audit_id"])
    assert result == {"audit_id": audit.pk, "audit": "distill-steps", "created": True}
    stored = AuditSpecSerializer(audit).data
    for key, value in spec.items():
        assert stored[key] == value, key
    assert audit.probe_arms == spec["probe_arms"] and audit.probe_mode == "end"
    assert audit.blinding_seed == audit_secret_from_seed(spec["seed"], spec["slug"])


@pytest.mark.django_db
def test_the_likert_example_makes_a_trace_rating_audit():
    # when the example Likert audit is created
    _run("create_audit", str(LIKERT_AUDIT))
    # then it is a trace-rating audit with its two items, their scales and anchors
    audit = Audit.objects.get(slug="trace-interpretability")
    assert audit.kind == Audit.Kind.TRACE_RATINGS
    assert [(i["key"], i["min"], i["max"]) for i in audit.likert_items] == [
        ("interpretability", 1, 7),
        ("cognitive_load", 1, 7),
    ]
    assert audit.likert_items[0]["min_label"] == "very hard"
    assert audit.error_categories == []  # no verdicts in a rating audit
    assert audit.annotator_title == "Reading reasoning" and audit.show_final_answer


@pytest.mark.django_db
def test_a_json_file_works_the_same_and_defaults_fill_the_rest(tmp_path):
    # given a minimal JSON file
    path = tmp_path / "minimal.json"
    path.write_text(json.dumps({"slug": "minimal", "name": "Minimal"}))
    # when it is created
    _run("create_audit", str(path))
    # then the model's defaults hold, with the default error categories and a random secret
    audit = Audit.objects.get(slug="minimal")
    assert audit.kind == Audit.Kind.STEP_LABELS and audit.context_window == 2
    assert "calculation error" in audit.error_categories
    assert audit.seed == "" and len(audit.blinding_seed) == 64


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"colour": "red"}, "colour", "Unknown key"),
        ({"name": 5}, "name", "Must be a string"),
        ({"show_final_answer": "yes"}, "show_final_answer", "true or false"),
        ({"leak_threshold": "0.7"}, "leak_threshold", "Must be a number"),
        ({"leak_threshold": 0.3}, "leak_threshold", "greater than or equal to 0.5"),
        ({"context_window": 1.5}, "context_window", "whole number"),
        ({"kind": "essays"}, "kind", "not a valid choice"),
        ({"normaliser_version": "norm-v9"}, "normaliser_version", "not a valid choice"),
        ({"error_categories": ["x", 3]}, "error_categories[1]", "Must be a string"),
        ({"error_categories": ["x", "X"]}, "error_categories", "listed twice"),
        ({"error_categories": "x"}, "error_categories", "list"),
        (
            {
                "likert_items": [
                    {"key": "a", "label": "A"},
                    {"key": "b", "label": "B", "anchors": []},
                ]
            },
            "likert_items[1].anchors",
            "Unknown key",
        ),
        (
            {"likert_items": [{"key": "a", "label": "A", "max": "7"}]},
            "likert_items[0].max",
            "whole number",
        ),
        (
            {"likert_items": [{"key": "a", "label": "A", "min": 5, "max": 3}]},
            "likert_items[0].max",
            "greater than min",
        ),
        (
            {"likert_items": [{"key": "a", "label": "A"}, {"key": "a", "label": "B"}]},
            "likert_items",
            "listed twice",
        ),
        ({"likert_items": [{"label": "no key"}]}, "likert_items[0].key", "required"),
        (
            {"normaliser_rules": [{"pattern": "(a", "replacement": ""}]},
            "normaliser_rules",
            "rule 1",
        ),
        (
            {"normaliser_rules": [{"pattern": "a", "replacement": "aa"}]},
            "normaliser_rules",
            "not idempotent",
        ),
        (
            {"normaliser_rules": [{"pattern": "a", "flags": "i"}]},
            "normaliser_rules[0].flags",
            "Unknown key",
        ),
        ({"seed": 12345}, "seed", "Must be a string"),
        ({"slug": "has space"}, "slug", "letters"),
        ({"kind": "trace_ratings"}, "likert_items", "at least one Likert item"),
    ],
)
def test_a_wrong_file_names_the_field_and_creates_nothing(tmp_path, change, path, message):
    # given the example file with one thing wrong
    spec = {**yaml.safe_load(STEP_AUDIT.read_text()), **change}
    file = tmp_path / "audit.yaml"
    file.write_text(yaml.safe_dump(spec))
    # when it is created
    with pytest.raises(CommandError) as error:
        _run("create_audit", str(file))
    # then the error names the field by its path, and no audit exists
    text = str(error.value)
    assert f": {path}: " in text and message in text, text
    assert "nothing was created" in text
    assert not Audit.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [("slug: [unclosed", "not valid YAML"), ("- a\n- b\n", "one object"), ("", "one object")],
)
def test_an_unreadable_file_is_one_line(tmp_path, content, message):
    file = tmp_path / "broken.yaml"
    file.write_text(content)
    with pytest.raises(CommandError, match=message):
        _run("create_audit", str(file))
    with pytest.raises(CommandError, match="no such file"):
        _run("create_audit", str(tmp_path / "missing.json"))
    assert not Audit.objects.exists()


@pytest.mark.django_db
def test_update_changes_what_the_file_says_and_refuses_without_the_flag(tmp_path):
    # given an audit made from the example
    _run("create_audit", str(STEP_AUDIT))
    audit = Audit.objects.get(slug="distill-steps")
    secret = audit.blinding_seed
    # when the same file is run again without --update
    with pytest.raises(CommandError, match="--update"):
        _run("create_audit", str(STEP_AUDIT))
    # when a file with a new title and one more category is run with --update
    file = tmp_path / "update.json"
    categories = [*audit.error_categories, "dosage error"]
    file.write_text(
        json.dumps(
            {"slug": "distill-steps", "annotator_title": "Review", "error_categories": categories}
        )
    )
    result = json.loads(_run("create_audit", str(file), "--update", "--json"))
    # then only those changed, the secret is kept, and the JSON says it was not created
    assert result == {"audit_id": audit.pk, "audit": "distill-steps", "created": False}
    audit.refresh_from_db()
    assert audit.annotator_title == "Review" and audit.error_categories == categories
    assert audit.guidelines.startswith("## How to label") and audit.blinding_seed == secret


@pytest.mark.django_db
def test_an_update_that_would_rewrite_the_record_is_refused(tmp_path, demo_audit):
    # given an audit with imported traces (blind codes and public ids drawn from its secret)
    file = tmp_path / "seed.json"
    file.write_text(json.dumps({"slug": demo_audit.slug, "seed": "late"}))
    # when a seed is set afterwards, or the kind changed without Likert items
    with pytest.raises(CommandError, match=r"seed: .*can no longer change"):
        _run("create_audit", str(file), "--update")
    file.write_text(json.dumps({"slug": demo_audit.slug, "kind": "trace_ratings"}))
    with pytest.raises(CommandError, match="likert_items"):
        _run("create_audit", str(file), "--update")
    # then nothing changed
    before = demo_audit.blinding_seed
    demo_audit.refresh_from_db()
    assert demo_audit.seed == "" and demo_audit.blinding_seed == before
    assert demo_audit.kind == Audit.Kind.STEP_LABELS


def test_the_schema_is_the_declared_list():
    # a new audit setting is one entry in AUDIT_SPEC_FIELDS: the serializer follows it
    assert tuple(AuditSpecSerializer().fields) == AUDIT_SPEC_FIELDS


# --- the seed: the same files and seeds re-run on a fresh database give the same study ------
def _study(audit_file: Path) -> dict:
    """Create the audit, import the example traces, two clinicians, one assigned batch."""
    made = json.loads(_run("create_audit", str(audit_file), "--json"))
    slug = made["audit"]
    _run(
        "import_traces",
        str(EXAMPLES / "traces.jsonl"),
        "--audit",
        slug,
        "--no-progress",
        "--segmenter",
        "given",
    )
    for name in ("rater1", "rater2"):
        _run("add_user", name, "--role", "clinician", "--json")
    batch = json.loads(
        _run(
            "create_batch",
            "--audit",
            slug,
            "--size",
            "24",
            "--overlap",
            "2",
            "--seed",
            "pilot-1",
            "--annotators",
            "rater1,rater2",
            "--hidden-repeats",
            "0.1",
            "--confirm-leak",
            "--json",
        )
    )
    audit = Audit.objects.get(slug=slug)
    return {
        "blind_codes": sorted(
            Condition.objects.filter(audit=audit).values_list("name", "blind_code")
        ),
        "step_ids": sorted(
            Step.objects.filter(audit=audit).values_list("trace__external_id", "index", "public_id")
        ),
        "sample": sorted(
            BatchItem.objects.filter(batch_id=batch["batch_id"]).values_list(
                "step__trace__external_id", "step__index"
            )
        ),
        "assignments": [
            (
                a.annotator.username,
                a.public_id,
                [i.batch_item.step.public_id for i in a.items.order_by("position")],
            )
            for a in Assignment.objects.filter(batch_id=batch["batch_id"]).order_by("public_id")
        ],
        "batch_json": batch,
    }


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_a_seeded_study_rerun_on_a_fresh_database_is_identical(tmp_path):
    # given the study run once from files: audit (with its seed), traces, accounts, batch
    first = _study(STEP_AUDIT)
    # when the database is emptied and the same commands run again
    call_command("flush", "--no-input", verbosity=0)
    assert not Audit.objects.exists()
    second = _study(STEP_AUDIT)
    # then the samples, the orders and every public id and blind code are the same
    assert first["sample"] and len(first["assignments"]) == 2
    assert second == first
    # and without a seed the secret is random: the same files give other ids and orders
    call_command("flush", "--no-input", verbosity=0)
    unseeded = tmp_path / "unseeded.yaml"
    spec = yaml.safe_load(STEP_AUDIT.read_text())
    del spec["seed"]
    unseeded.write_text(yaml.safe_dump(spec))
    third = _study(unseeded)
    assert third["step_ids"] != first["step_ids"]
    assert [a[1] for a in third["assignments"]] != [a[1] for a in first["assignments"]]


@pytest.mark.django_db
def test_probe_labels_that_name_an_arm_are_refused_in_a_file():
    from annotations.audit_spec import AuditSpecSerializer

    spec = {
        "slug": "probe-named",
        "name": "x",
        "probe_arms": [
            {"label": "Teacher style", "condition": "teacher"},
            {"label": "Source 2", "condition": "student"},
        ],
    }
    serializer = AuditSpecSerializer(data=spec)
    assert not serializer.is_valid()
    assert "names a condition" in str(serializer.errors["probe_arms"])
    assert not Audit.objects.filter(slug="probe-named").exists()
