from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Assignment, Batch


def test_create_batch_prints_strata_and_assigns(demo_audit, clinician, other_clinician):
    # when
    out = StringIO()
    call_command(
        "create_batch",
        "--audit",
        "demo-test",
        "--size",
        "30",
        "--overlap",
        "2",
        "--annotators",
        "clinician1,clinician2",
        "--seed",
        "7",
        "--name",
        "pilot",
        "--stratify-by-correctness",
        "--gold",
        "2",
        "--hidden-repeats",
        "0.1",
        stdout=out,
    )
    # then
    text = out.getvalue()
    assert "answer_correct=wrong" in text
    assert "+ 2 gold items" in text
    batch = Batch.objects.get(name="pilot")
    assert batch.seed == "7"
    assert Assignment.objects.filter(batch=batch).count() == 2
    # hidden repeats: 10% of 32 items
    assert all(a.items.filter(is_hidden_repeat=True).count() == 3 for a in batch.assignments.all())


def test_create_batch_rejects_unknown_annotator(demo_audit):
    with pytest.raises(CommandError, match="nobody"):
        call_command(
            "create_batch",
            "--audit",
            "demo-test",
            "--size",
            "3",
            "--annotators",
            "nobody",
            stdout=StringIO(),
        )


def test_demo_seed_assigns_a_batch_idempotently(db, tmp_path):
    from annotations.services.demo import DEMO_BATCH, demo_seed

    demo_seed(credentials_file=tmp_path / "c.txt")
    demo_seed(credentials_file=tmp_path / "c.txt")
    batch = Batch.objects.get(name=DEMO_BATCH)
    assert sorted(batch.assignments.values_list("annotator__username", flat=True)) == [
        "clinician1",
        "clinician2",
    ]


def test_create_batch_mode_draws_whole_traces(demo_audit, clinician):
    # when a first-error batch of 3 traces is made from the command line
    out = StringIO()
    call_command(
        "create_batch",
        "--audit",
        "demo-test",
        "--size",
        "3",
        "--mode",
        "first_error",
        "--annotators",
        "clinician1",
        "--name",
        "fe",
        stdout=out,
    )
    # then it is a trace batch in that mode, every step of 3 traces, assigned
    batch = Batch.objects.get(name="fe")
    assert batch.mode == "first_error" and batch.design["unit"] == "trace"
    assert batch.items.values("step__trace_id").distinct().count() == 3
    assert Assignment.objects.get(batch=batch).items.count() == batch.items.count()


def test_create_batch_mode_refusals_are_one_line(demo_audit):
    with pytest.raises(CommandError, match="no gold items"):
        call_command(
            "create_batch", "--audit", "demo-test", "--size", "3", "--mode", "trace", "--gold", "1"
        )
    with pytest.raises(CommandError):
        call_command("create_batch", "--audit", "demo-test", "--size", "3", "--mode", "sideways")
