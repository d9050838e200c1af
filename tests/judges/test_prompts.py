import itertools

import pytest

from judges.prompts import (
    DEFAULT_TEMPLATE,
    PLACEHOLDERS,
    PromptTemplate,
    prompt_hash,
    render_messages,
    template_placeholders,
)


def _render(**overrides):
    kwargs = {
        "question": "Which organ produces insulin?",
        "options": {"A": "Liver", "B": "Pancreas"},
        "context_steps": ["Insulin is a peptide hormone."],
        "step": "It is made by the beta cells of the pancreas.",
        "categories": {"factual": "a false statement of fact", "logic": ""},
    }
    kwargs.update(overrides)
    return render_messages(DEFAULT_TEMPLATE, **kwargs)


def test_default_template_renders_every_part():
    # given / when
    system, user = _render()
    # then
    assert system["role"] == "system"
    text = user["content"]
    assert "Which organ produces insulin?" in text
    assert "A. Liver\nB. Pancreas" in text
    assert "Step 1: Insulin is a peptide hormone." in text
    assert "<step>\nIt is made by the beta cells of the pancreas.\n</step>" in text
    assert "- factual: a false statement of fact\n- logic" in system["content"]
    assert '"verdict"' in system["content"] and "abstain" in system["content"]
    assert "$" not in text + system["content"]


def test_steps_of_one_trace_share_their_prompt_prefix_and_end_with_the_step():
    # given the second and third steps of one trace
    second = _render(context_steps=["A."], step="B.")
    third = _render(context_steps=["A.", "B."], step="C.")
    # then the system text is identical and the third's user message repeats the second's up
    # to the end of its preceding steps, so a prefix-caching server computes that part once
    assert second[0] == third[0]
    shared = second[1]["content"].split("\n\nStep to assess:")[0]
    assert third[1]["content"].startswith(shared)
    assert third[1]["content"].endswith("<step>\nC.\n</step>")


def test_context_none_and_empty_render_differently():
    # given / when
    hidden = _render(context_steps=None)[1]["content"]
    first = _render(context_steps=[])[1]["content"]
    # then the judge is told which situation it is in
    assert "(not shown)" in hidden
    assert "(this is the first step)" in first


def test_final_answer_is_shown_only_when_asked():
    # given / when
    hidden = _render(final_answer="B")[1]["content"]
    shown = _render(show_final_answer=True, final_answer="B")[1]["content"]
    # then
    assert "Final answer" not in hidden
    assert "Final answer the reasoning reached: B" in shown


def test_show_final_answer_without_answer_is_rejected():
    # when / then
    with pytest.raises(ValueError, match="final_answer"):
        _render(show_final_answer=True)


def test_options_as_list_are_lettered():
    # given / when
    text = _render(options=["yes", "no"])[1]["content"]
    # then
    assert "A. yes\nB. no" in text


@pytest.mark.parametrize("name", ["condition", "model", "trace_id", "step_id"])
def test_template_with_identity_placeholder_is_rejected_by_name(name):
    # given a custom template asking for something the judge must not see
    # when / then
    with pytest.raises(ValueError, match=rf"unknown placeholder '\${name}'"):
        PromptTemplate(system="", user=f"Judge $step from ${{{name}}}")


def test_template_without_step_is_rejected():
    # when / then
    with pytest.raises(ValueError, match=r"\$step"):
        PromptTemplate(system="", user="Question: $question")


def test_lone_dollar_is_reported_with_its_line():
    # when / then
    with pytest.raises(ValueError, match="line 2"):
        PromptTemplate(system="", user="$step\ncosts $ 5")


def test_custom_template_with_known_placeholders_and_literal_braces():
    # given a template with a JSON example (braces need no escaping) and $$
    template = PromptTemplate(system="", user='$step costs $$5. Reply {"verdict": ...}')
    # when
    (message,) = render_messages(
        template, question="q", options=None, context_steps=None, step="S", categories=[]
    )
    # then the empty system message is omitted and the literal text survives
    assert message == {"role": "user", "content": 'S costs $5. Reply {"verdict": ...}'}


def test_template_placeholders_lists_what_the_default_uses():
    # given / when / then
    used = template_placeholders(DEFAULT_TEMPLATE.user) | template_placeholders(
        DEFAULT_TEMPLATE.system
    )
    assert used == PLACEHOLDERS


def test_prompt_hash_is_canonical_and_sensitive():
    # given
    messages = _render()
    reordered = [{"content": m["content"], "role": m["role"]} for m in messages]
    changed = _render(step="It is made by the liver.")
    # when / then
    assert prompt_hash(messages) == prompt_hash(reordered)
    assert prompt_hash(messages) != prompt_hash(changed)
    assert len(prompt_hash(messages)) == 64


@pytest.mark.django_db
def test_a_runs_steps_are_handed_out_trace_by_trace_in_step_order(demo_audit, fake, make_judge):
    # given a run over the demo audit
    import random

    from annotations.models import Step
    from judges.services import run_create, run_missing_step_ids
    from judges.services.runs import _shuffled_by_trace

    run = run_create(audit=demo_audit, judge=make_judge(fake.base_url), segmentation="given")
    ids = run_missing_step_ids(run)
    # when ordered for the lanes
    ordered = _shuffled_by_trace(run, ids, random.Random("seed"))
    # then every step once, each trace's steps together and in order, traces not in import order
    rows = dict((pk, (t, i)) for pk, t, i in Step.objects.values_list("pk", "trace_id", "index"))
    keys = [rows[pk] for pk in ordered]
    assert sorted(ordered) == sorted(ids)
    traces = [t for t, _ in keys]
    runs_of_traces = [t for k, t in enumerate(traces) if k == 0 or traces[k - 1] != t]
    assert len(runs_of_traces) == len(set(traces))
    assert all(a[1] < b[1] for a, b in itertools.pairwise(keys) if a[0] == b[0])
    assert runs_of_traces != sorted(runs_of_traces)
