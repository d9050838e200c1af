"""The blinding check in the audit report: texts sampled from the seed, guesses mapped to
conditions by the admin's explicit mapping, answer options hidden until unblinding."""

import json

import pandas as pd
import pytest

from annotations.models import Condition, Step
from annotations.selectors.pseudonyms import id_pseudonyms
from reports.collect import blinded_texts_collect, guesses_collect, probe_mapping
from reports.services import audit_unblind, report_build

# Neutral labels, mapped by the admin; the third arm's label matches no condition's wording.
ARMS = {"teacher": "Source B", "student-before": "Source C", "student-after": "Source A"}


@pytest.fixture
def probed_audit(expert_labels):
    """The demo audit with expert labels, neutral probe labels mapped to the arms, and every
    third label answering the probe."""
    from annotations.models.labels import Label

    audit = expert_labels
    audit.probe_arms = [{"label": label, "condition": name} for name, label in ARMS.items()]
    audit.probe_mode, audit.probe_every = "every", 1
    audit.full_clean()
    audit.save(update_fields=["probe_arms", "probe_mode", "probe_every"])
    labels = list(Label.objects.filter(step__audit=audit).select_related("step__trace__condition"))
    for i, label in enumerate(labels):
        if i % 3 == 0:
            # Half the answers name the true arm, the rest don't know.
            truth = label.step.trace.condition.name
            label.probe_guess = ARMS[truth] if i % 2 == 0 else "no idea"
    Label.objects.bulk_update(labels, ["probe_guess"])
    return audit


def test_probe_labels_map_to_conditions_by_the_explicit_mapping(probed_audit):
    # when
    mapping = probe_mapping(probed_audit)
    # then every label maps to the condition the admin chose, not to a look-alike name
    names = dict(Condition.objects.filter(audit=probed_audit).values_list("pk", "name"))
    assert {option: names[pk] for option, pk in mapping.items()} == {
        label: name for name, label in ARMS.items()
    }


def test_guesses_carry_blind_codes_until_unblinded(probed_audit):
    # when
    guesses = guesses_collect(probed_audit)
    # then conditions and guesses are blind codes; don't-know answers guess nothing
    codes = set(probed_audit.conditions.values_list("blind_code", flat=True))
    assert len(guesses) > 0
    assert set(guesses["condition"]) <= codes
    named = guesses[guesses["option"] != "no idea"]
    assert (named["guess"] == named["condition"]).all()
    assert guesses.loc[guesses["option"] == "no idea", "guess"].isna().all()


def test_text_sample_is_bounded_and_reproducible_from_the_seed(demo_audit):
    # given the 'given' segmentation's steps
    population = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    # when sampled below the population
    first = blinded_texts_collect(demo_audit, segmentation="given", seed=1, limit=50)
    again = blinded_texts_collect(demo_audit, segmentation="given", seed=1, limit=50)
    other = blinded_texts_collect(demo_audit, segmentation="given", seed=2, limit=50)
    whole = blinded_texts_collect(demo_audit, segmentation="given", seed=1)
    # then whole traces, at most the limit, the same for the same seed
    assert 40 <= len(first) <= 50 and first.attrs["n_population"] == population
    per_trace = Step.objects.filter(audit=demo_audit, segmentation="given").values_list(
        "trace__external_id", flat=True
    )
    # (while blinded the texts carry the traces' pseudonyms)
    sizes = pd.Series(
        id_pseudonyms(seed=demo_audit.blinding_seed, kind="trace", external_ids=list(per_trace))
    ).value_counts()
    assert first["trace_id"].value_counts().to_dict() == {
        t: sizes[t] for t in first["trace_id"].unique()
    }
    assert first.equals(again)
    assert not first.equals(other)
    assert len(whole) == population
    codes = set(demo_audit.conditions.values_list("blind_code", flat=True))
    assert set(whole["condition"]) == codes
    assert whole["text"].str.len().gt(0).all()


def test_report_blinding_section_while_blinded_hides_the_option_wording(
    probed_audit, condition_names
):
    # when
    report = report_build(audit=probed_audit, resamples=50)
    # then the classifier ran on the main segmentation's steps
    blinding = report["blinding"]
    classifier = blinding["classifier"]
    n_given = Step.objects.filter(audit=probed_audit, segmentation="given").count()
    assert classifier["n"] == n_given
    assert 0.0 <= classifier["ci_low"] <= classifier["auc"] <= classifier["ci_high"] <= 1.0
    assert "StratifiedGroupKFold" in classifier["method"]
    # and Bang's index per blind code, every named guess correct
    rows = blinding["index"]
    assert {r["condition"] for r in rows} == set(
        probed_audit.conditions.values_list("blind_code", flat=True)
    )
    assert all(r["n_incorrect"] == 0 and r["bang_bi"] > 0 for r in rows)
    assert blinding["guesses"]["mapped"] is True
    # and neither the option wording nor a condition name anywhere
    text = json.dumps(report)
    assert blinding["options_hidden"] is True
    for word in [*ARMS.values(), *condition_names]:
        assert word not in text, word
    assert {k for r in rows for k in r["options"]} <= {
        "option 1",
        "option 2",
        "option 3",
        "no idea",
    }


def test_report_blinding_section_after_unblinding_shows_the_options(probed_audit, admin_user):
    # given
    audit_unblind(audit=probed_audit, user=admin_user, confirm_slug=probed_audit.slug)
    probed_audit.refresh_from_db()
    # when
    report = report_build(audit=probed_audit, resamples=50)
    # then
    rows = {r["condition"]: r for r in report["blinding"]["index"]}
    assert report["blinding"]["options_hidden"] is False
    assert set(rows["teacher"]["options"]) <= {ARMS["teacher"], "no idea"}
    assert report["blinding"]["blinded"] is False


def test_unmapped_options_give_counts_and_a_note(probed_audit):
    # given labels mapped to no existing condition (as an old audit's unmatched options are)
    type(probed_audit).objects.filter(pk=probed_audit.pk).update(
        probe_arms=[{"label": label, "condition": "?"} for label in ARMS.values()]
    )
    probed_audit.refresh_from_db()
    # when
    report = report_build(audit=probed_audit, resamples=50)
    # then no index, counts per (hidden) option, and why
    blinding = report["blinding"]
    assert blinding["guesses"]["mapped"] is False
    assert all("bang_bi" not in r for r in blinding["index"])
    assert any("Bang's index needs" in n for n in blinding["notes"])
    assert "teacher model" not in json.dumps(report)


def test_page_and_html_show_the_blinding_check(client, probed_audit, researcher):
    # given
    client.force_login(researcher)
    from django.urls import reverse

    # when
    page = client.get(reverse("reports:audit", args=[probed_audit.slug]) + "?resamples=50")
    html = client.get(reverse("reports:audit-html", args=[probed_audit.slug]) + "?resamples=50")
    # then
    for response in (page, html):
        body = response.content.decode()
        assert response.status_code == 200
        assert "Blinding check" in body
        assert "near 0.5 is good" in body
        assert "Bang" in body
        assert "teacher model" not in body
