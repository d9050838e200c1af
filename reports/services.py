"""Report services: build a report from the database or from files; lock the analysis plan;
unblind an audit.

The statistics live in ``auditapp.agreement`` (pure, no Django); this module adds what only the
database knows: the audit, its blinding state, the locked analysis plan and whether the report
followed it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from scipy import stats

from annotations.audit_spec import AUDIT_SPEC_FIELDS
from annotations.models import Assignment, Audit, Batch, Condition, Step
from annotations.roles import Role, user_has_role, user_is_researcher_or_admin
from annotations.services.normalise import normaliser_description
from auditapp.agreement.annotators import (
    QualityThresholds,
    annotator_agreement,
    annotator_quality,
)
from auditapp.agreement.blinding import DONT_KNOW
from auditapp.agreement.first_error import (
    FIRST_ERROR_RULE,
    INTERVAL_RULE,
    evaluator_modes,
    first_error_evaluation,
    first_error_sentence,
)
from auditapp.agreement.formats import (
    answers_read,
    csv_text_restore,
    labels_read,
    ratings_read,
)
from auditapp.agreement.ppi import ppi_mean
from auditapp.agreement.rates import ABSTAIN_RULES
from auditapp.agreement.report import REPORT_KEYS, report_compute
from auditapp.agreement.sequential import ppi_increments, wave_stopping
from auditapp.agreement.stratified import stratified_ppi_mean
from auditapp.exceptions import ApplicationError, ConflictError, ForbiddenError
from reports.collect import (
    AuditTables,
    annotator_items_collect,
    audit_tables_collect,
    batch_units_collect,
    condition_labels,
    ids_pseudonymised,
    judge_modes_collect,
    step_positions_collect,
    tables_fingerprint,
)
from reports.models import AnalysisPlan, UnblindingEvent
from studies.selectors.overview import study_exclusions

__all__ = [
    "ReportParams",
    "analysis_plan_lock",
    "analysis_plan_normalise",
    "audit_unblind",
    "plan_hash",
    "report_build",
    "report_cached",
    "report_cached_keyed",
    "report_from_files",
]

# Bump when the report's shape changes, so cached reports of the old shape are not served.
# 2: blinding check (classifier, index); 3: findings, controls, PPI++; 4: first-error section;
# 5: waves' stopping rule, stratified PPI; 6: hedging terms, the rendered body cached beside it
# 7: PPI predicts with the judge's stated probability (judge_probability) where it has one
REPORT_VERSION = 8
CACHE_SECONDS = 24 * 3600
EXCLUSION_KEYS = ("evaluators", "evaluator_kinds", "trace_ids", "step_ids")


@dataclass(frozen=True)
class ReportParams:
    """Everything that changes the numbers of a report besides the data."""

    seed: int = 0
    resamples: int = 2000
    ece_bins: int = 10
    abstain_rule: str = "exclude"
    confidence_level: float = 0.95

    def check(self) -> ReportParams:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ApplicationError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.resamples, int) or not 1 <= self.resamples <= 100_000:
            raise ApplicationError(f"resamples must lie in 1..100000, got {self.resamples!r}")
        if not isinstance(self.ece_bins, int) or not 1 <= self.ece_bins <= 1000:
            raise ApplicationError(f"ece_bins must lie in 1..1000, got {self.ece_bins!r}")
        if self.abstain_rule not in ABSTAIN_RULES:
            raise ApplicationError(
                f"abstain_rule must be one of {', '.join(ABSTAIN_RULES)}, got {self.abstain_rule!r}"
            )
        if not 0.5 <= float(self.confidence_level) < 1.0:
            raise ApplicationError(
                f"confidence_level must lie in [0.5, 1), got {self.confidence_level!r}"
            )
        return self


# --- the analysis plan -------------------------------------------------------------------------
def analysis_plan_normalise(plan: dict[str, Any]) -> dict[str, Any]:
    """Check a plan and return it complete, with every default written out.

    A plan is ``{"metrics": [...], "abstain_rule": ..., "exclusions": {...}, "bootstrap":
    {"resamples": n, "confidence_level": x}, "ece_bins": n, "seed": n, "notes": "..."}``;
    missing parts take the report defaults, unknown keys are refused (a typo in a plan must
    not silently mean "no exclusion").
    """
    if not isinstance(plan, dict):
        raise ApplicationError("the analysis plan must be a JSON object", code="invalid_plan")
    allowed = {
        "metrics",
        "abstain_rule",
        "exclusions",
        "bootstrap",
        "ece_bins",
        "seed",
        "notes",
        "stopping",
    }
    unknown = sorted(set(plan) - allowed)
    if unknown:
        raise ApplicationError(
            f"unknown analysis-plan key(s): {', '.join(unknown)}",
            code="invalid_plan",
            extra={"allowed": sorted(allowed)},
        )
    defaults = ReportParams()
    metrics = plan.get("metrics", [k for k in REPORT_KEYS if k != "methods"])
    if not isinstance(metrics, list) or not all(m in REPORT_KEYS for m in metrics):
        raise ApplicationError(
            "metrics must be a list of report sections",
            code="invalid_plan",
            extra={"allowed": list(REPORT_KEYS)},
        )
    exclusions = plan.get("exclusions", {}) or {}
    if not isinstance(exclusions, dict) or set(exclusions) - set(EXCLUSION_KEYS):
        raise ApplicationError(
            f"exclusions must be an object with keys among {', '.join(EXCLUSION_KEYS)}",
            code="invalid_plan",
        )
    for key, values in exclusions.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApplicationError(
                f"exclusions.{key} must be a list of strings", code="invalid_plan"
            )
    bootstrap = plan.get("bootstrap", {}) or {}
    if not isinstance(bootstrap, dict) or set(bootstrap) - {"resamples", "confidence_level"}:
        raise ApplicationError(
            "bootstrap must be an object with resamples and confidence_level",
            code="invalid_plan",
        )
    params = ReportParams(
        seed=plan.get("seed", defaults.seed),
        resamples=bootstrap.get("resamples", defaults.resamples),
        ece_bins=plan.get("ece_bins", defaults.ece_bins),
        abstain_rule=plan.get("abstain_rule", defaults.abstain_rule),
        confidence_level=bootstrap.get("confidence_level", defaults.confidence_level),
    )
    try:
        params.check()
    except ApplicationError as exc:
        raise ApplicationError(exc.message, code="invalid_plan") from exc
    notes = plan.get("notes", "")
    if not isinstance(notes, str):
        raise ApplicationError("notes must be text", code="invalid_plan")
    stopping = stopping_rule_normalise(plan.get("stopping"))
    return {
        "metrics": list(metrics),
        "abstain_rule": params.abstain_rule,
        "exclusions": {k: sorted(set(exclusions.get(k, []))) for k in EXCLUSION_KEYS},
        "bootstrap": {
            "method": "cluster bootstrap over traces, percentile intervals",
            "resamples": params.resamples,
            "confidence_level": float(params.confidence_level),
        },
        "ece_bins": params.ece_bins,
        "seed": params.seed,
        "notes": notes,
        "stopping": stopping,
    }


STOPPING_DEFAULTS = {"alpha": 0.05, "labels_per_arm": None}


def stopping_rule_normalise(value: Any) -> dict[str, Any]:
    """The waves' stopping rule as the plan fixes it: ``{"alpha": α, "labels_per_arm": t*}``
    (t* the labels per arm the sequences are tuned for; None: the batch's sample per arm)."""
    value = {} if value is None else value
    if not isinstance(value, dict) or set(value) - set(STOPPING_DEFAULTS):
        raise ApplicationError(
            "stopping must be an object with alpha and labels_per_arm", code="invalid_plan"
        )
    alpha = value.get("alpha", STOPPING_DEFAULTS["alpha"])
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 0.5:
        raise ApplicationError("stopping.alpha must lie in (0, 0.5]", code="invalid_plan")
    t_opt = value.get("labels_per_arm")
    if t_opt is not None and (
        isinstance(t_opt, bool) or not isinstance(t_opt, int) or not 1 <= t_opt <= 1_000_000
    ):
        raise ApplicationError(
            "stopping.labels_per_arm must be an integer in 1..1000000 or null",
            code="invalid_plan",
        )
    return {"alpha": float(alpha), "labels_per_arm": t_opt}


def plan_canonical_json(plan: dict[str, Any]) -> str:
    """The bytes the hash is over: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_hash(plan: dict[str, Any]) -> str:
    return hashlib.sha256(plan_canonical_json(plan).encode("utf-8")).hexdigest()


def plan_params(plan: dict[str, Any]) -> ReportParams:
    return ReportParams(
        seed=plan["seed"],
        resamples=plan["bootstrap"]["resamples"],
        ece_bins=plan["ece_bins"],
        abstain_rule=plan["abstain_rule"],
        confidence_level=plan["bootstrap"]["confidence_level"],
    )


@transaction.atomic
def analysis_plan_lock(*, audit: Audit, user, plan: dict[str, Any]) -> AnalysisPlan:
    """Lock the analysis plan of a blinded audit: once, before unblinding, never changed."""
    if not user_is_researcher_or_admin(user):
        raise ForbiddenError("only researchers and admins lock analysis plans")
    audit = Audit.objects.select_for_update().get(pk=audit.pk)
    if audit.unblinded_at is not None:
        raise ConflictError(
            "the audit is already unblinded: a plan locked now would not be blind",
            code="already_unblinded",
        )
    if AnalysisPlan.objects.filter(audit=audit).exists():
        raise ConflictError("the analysis plan is already locked", code="plan_locked")
    complete = analysis_plan_normalise(plan)
    return AnalysisPlan.objects.create(
        audit=audit,
        plan=complete,
        sha256=plan_hash(complete),
        locked_by=user,
        locked_at=timezone.now(),
    )


def analysis_plan_get(*, audit: Audit) -> AnalysisPlan | None:
    return AnalysisPlan.objects.filter(audit=audit).select_related("locked_by").first()


# --- unblinding ------------------------------------------------------------------------------
@transaction.atomic
def audit_unblind(
    *, audit: Audit, user, confirm_slug: str, ip_address: str | None = None
) -> UnblindingEvent:
    """Reveal condition names: admins only, typed confirmation, logged, once and for ever."""
    if not user_has_role(user, Role.ADMIN):
        raise ForbiddenError("only admins unblind an audit")
    # Locked so two admins confirming at once cannot both "be first".
    audit = Audit.objects.select_for_update().get(pk=audit.pk)
    if audit.unblinded_at is not None:
        raise ConflictError(
            f"audit {audit.slug!r} was unblinded on {audit.unblinded_at:%Y-%m-%d %H:%M} UTC; "
            "unblinding cannot be repeated or undone",
            code="already_unblinded",
        )
    if (confirm_slug or "").strip() != audit.slug:
        raise ApplicationError(
            f"type the audit's slug ({audit.slug}) to confirm unblinding",
            code="confirmation_required",
        )
    now = timezone.now()
    # unblinded_at/unblinded_by are editable=False in forms, not in the ORM.
    Audit.objects.filter(pk=audit.pk, unblinded_at__isnull=True).update(
        unblinded_at=now, unblinded_by=user
    )
    plan = AnalysisPlan.objects.filter(audit=audit).first()
    return UnblindingEvent.objects.create(
        audit=audit,
        user=user,
        at=now,
        plan_sha256=plan.sha256 if plan else "",
        ip_address=ip_address,
    )


# --- reports ------------------------------------------------------------------------------
def _exclude(
    labels: pd.DataFrame, exclusions: dict[str, list[str]], *, audit: Audit
) -> pd.DataFrame:
    """Drop the rows a locked plan excludes.

    A plan is locked while the audit is blinded, so its ``trace_ids`` are the pseudonyms the
    researcher saw; they match the table's ``trace_id`` while blinded and, once the table
    shows the imported ids, match those ids' pseudonyms (an imported id typed into the plan
    matches nothing while blinded: the exclusion is no oracle for guessed ids).
    """
    keep = np.ones(len(labels), dtype=bool)
    for key, column in (
        ("evaluators", "evaluator"),
        ("evaluator_kinds", "evaluator_kind"),
        ("trace_ids", "trace_id"),
        ("step_ids", "step_id"),
    ):
        values = exclusions.get(key) or []
        if not values:
            continue
        hit = labels[column].astype(str).isin(values).to_numpy()
        if key == "trace_ids" and audit.unblinded_at is not None:
            pseudonyms = ids_pseudonymised(labels[column], seed=audit.blinding_seed, kind="trace")
            hit = hit | pseudonyms.isin(values).to_numpy()
        keep &= ~hit
    return labels[keep] if not keep.all() else labels


def _without_excluded_participants(
    labels: pd.DataFrame, ratings: pd.DataFrame | None, participants: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Drop the labels and ratings of participants a study's attention checks flagged."""
    raters = {p["rater"] for p in participants}
    if not raters:
        return labels, ratings
    if "evaluator" in labels and not labels.empty:
        hit = labels["evaluator"].astype(str).isin(raters) & labels["evaluator_kind"].eq("expert")
        labels = labels[~hit.to_numpy()]
    if ratings is not None and not ratings.empty:
        ratings = ratings[~ratings["rater"].astype(str).isin(raters).to_numpy()]
    return labels, ratings


def _excluded_experts(
    plan: AnalysisPlan | None, participants: list[dict[str, Any]]
) -> dict[str, str]:
    """Evaluator → why their labels were left out (the plan's list, attention checks)."""
    out = {
        str(name): "analysis plan"
        for name in ((plan.plan.get("exclusions") or {}).get("evaluators", []) if plan else [])
    }
    for p in participants:
        out[str(p["rater"])] = p.get("reason") or "attention checks"
    return out


def _plan_section(plan: AnalysisPlan | None, params: ReportParams) -> dict[str, Any]:
    if plan is None:
        return {"locked": False, "followed": None, "deviations": []}
    planned = plan_params(plan.plan)
    deviations = [
        {"setting": name, "planned": value, "used": getattr(params, name)}
        for name, value in asdict(planned).items()
        if getattr(params, name) != value
    ]
    intact = plan_hash(plan.plan) == plan.sha256
    if not intact:
        deviations.append({"setting": "plan", "planned": plan.sha256, "used": plan_hash(plan.plan)})
    return {
        "locked": True,
        "sha256": plan.sha256,
        "hash_verified": intact,
        "locked_at": plan.locked_at.isoformat(),
        "locked_by": plan.locked_by.get_username(),
        "plan": plan.plan,
        "followed": not deviations,
        "deviations": deviations,
    }


def _blinding_section(audit: Audit) -> dict[str, Any]:
    blinded = audit.unblinded_at is None
    conditions = []
    for code, name in Condition.objects.filter(audit=audit).values_list("blind_code", "name"):
        row = {"label": code if blinded else name, "blind_code": code}
        if not blinded:
            row["name"] = name
        conditions.append(row)
    event = UnblindingEvent.objects.filter(audit=audit).select_related("user").first()
    return {
        "batches": _batch_gates(audit),
        "blinded": blinded,
        "unblinded_at": audit.unblinded_at.isoformat() if audit.unblinded_at else None,
        "unblinded_by": event.user.get_username() if event else None,
        "conditions": sorted(conditions, key=lambda r: r["label"]),
        "rule": (
            "Conditions appear under their blind codes until an admin unblinds the audit; "
            "unblinding is logged and cannot be undone."
        ),
    }


# Top n-grams per arm in the report (the batch page shows all ten).
REPORT_GATE_FEATURES = 3


def _batch_gates(audit: Audit) -> list[dict[str, Any]]:
    """The leak gate's figures per batch, as recorded when the batch was assigned: the
    blinding classifier on what that batch's annotators were shown (see
    ``annotations.services.leak_gate``). Arms are blind codes, as on the batch page."""
    rows = []
    for name, gate, assigned in (
        Batch.objects.filter(audit=audit)
        .annotate(assigned=Exists(Assignment.objects.filter(batch=OuterRef("pk"))))
        .order_by("created_at", "pk")
        .values_list("name", "leak_gate", "assigned")
    ):
        check = (gate or {}).get("check")
        row: dict[str, Any] = {"batch": name, "assigned": bool(assigned), "recorded": bool(check)}
        if check:
            row.update(
                {
                    key: check.get(key)
                    for key in ("n_items", "auc", "ci_low", "ci_high", "threshold", "above")
                }
            )
            row["confirmed_by"] = gate.get("confirmed_by") or ""
            row["checked_at"] = gate.get("checked_at") or gate.get("confirmed_at")
            row["top_features"] = {
                arm: [f["ngram"] for f in features[:REPORT_GATE_FEATURES]]
                for arm, features in (check.get("top_features") or {}).items()
            }
        rows.append(row)
    return rows


def sequential_section(audit: Audit, plan: AnalysisPlan | None, *, seed: int = 0) -> dict:
    """The stopping rule after each wave, for every batch released in waves.

    Per arm, each labelled unit contributes its Horvitz–Thompson increment (y · n/(N π),
    y the share of its non-abstaining experts who call it an error) or, when the batch was
    drawn from a judge's predictions (the active and stratified-PPI designs record each
    drawn unit's prediction f and each stratum's mean before any label), its
    prediction-powered increment f̄ + (y − f) · n/(N π), λ = 1; waves in order, a random
    order (from the report's seed) within a wave. The rule's α and t* come from the
    locked plan; without one (or with a plan locked before the rule existed) the defaults,
    and the section says the rule was not fixed in advance."""
    rule = (plan.plan.get("stopping") if plan else None) or None
    fixed = rule is not None
    rule = stopping_rule_normalise(rule)
    rng = np.random.default_rng(seed)
    batches = []
    for batch_info, frame in batch_units_collect(audit, waves_only=True):
        strata = batch_info["strata"]
        population = pd.Series({s["key"]: s["population"] for s in strata})
        sample = pd.Series({s["key"]: s["sample"] for s in strata})
        arm_of_stratum = {s["key"]: s["condition"] for s in strata}
        shown = batch_info["condition_labels"]
        sampling = batch_info["sampling"]
        means = pd.Series(sampling.get("prediction_means") or {}, dtype=float)
        predictions = {int(k): v for k, v in (sampling.get("predictions") or {}).items()}
        powered = (
            not means.empty
            and set(population.index) <= set(means.index)
            and frame["unit"].isin(list(predictions)).all()
        )
        increments, waves, per_arm = {}, {}, {}
        for code in sorted(set(arm_of_stratum.values())):
            keys = [k for k, c in arm_of_stratum.items() if c == code]
            n_arm, big_n = float(sample[keys].sum()), float(population[keys].sum())
            rows = frame[frame["stratum"].isin(keys)]
            order = np.lexsort((rng.random(len(rows)), rows["wave"].to_numpy()))
            rows = rows.iloc[order]
            arm = shown.get(code, code)
            per_arm[arm] = int(n_arm)
            if n_arm == 0:
                continue
            # Without recorded predictions f = 0: the Horvitz–Thompson increments y·n/(Nπ).
            f = rows["unit"].map(predictions) if powered else pd.Series(0.0, index=rows.index)
            increments[arm] = ppi_increments(
                rows["y"].to_numpy(),
                f.to_numpy(dtype=float),
                rows["inclusion_probability"].to_numpy(),
                prediction_mean=(
                    float((population[keys] * means[keys]).sum() / big_n) if powered else 0.0
                ),
                n_arm=n_arm,
                big_n_arm=big_n,
            )
            waves[arm] = rows["wave"].to_numpy()
        entry: dict[str, Any] = {
            "batch": batch_info["name"],
            "waves": batch_info["waves"],
            "waves_released": batch_info["waves_released"],
            "planned_per_arm": per_arm,
            "increments": (
                f"prediction-powered (λ = 1): f̄ + (y − f)·n/(Nπ), f = {sampling.get('source')}"
                " as recorded when the batch was drawn"
                if powered
                else "expert labels (Horvitz–Thompson): y·n/(Nπ)"
            ),
        }
        if len(increments) < 2:
            entry.update(looks=[], fired_at_wave=None, advice="needs two arms", rule="")
            batches.append(entry)
            continue
        t_opt = rule["labels_per_arm"] or max(1.0, float(np.mean(list(per_arm.values()))))
        result = wave_stopping(
            increments,
            waves,
            waves_released=batch_info["waves_released"],
            alpha=rule["alpha"],
            t_opt=t_opt,
        )
        entry.update(
            alpha=result.alpha,
            t_opt=result.t_opt,
            fired_at_wave=result.fired_at_wave,
            advice=result.advice,
            rule=result.rule,
            looks=[
                {
                    "wave": look.wave,
                    "n_labels": look.n_labels,
                    "settled": look.decision.settled,
                    "ordering": list(look.decision.ordering),
                    "labels_more": look.decision.labels_more,
                    "arms": [
                        {"arm": arm, "estimate": est, "low": low, "high": high}
                        for arm, (est, low, high) in look.decision.intervals.items()
                    ],
                    "gaps": [
                        {"lower": lo, "higher": hi, "gap": g, "low": gl, "high": gh}
                        for lo, hi, g, gl, gh in look.gaps
                    ],
                }
                for look in result.looks
            ],
        )
        batches.append(entry)
    return {
        "batches": batches,
        "stopping_rule": rule,
        "rule_locked": fixed,
        "note": (
            "The stopping rule's α and t* are those of the locked analysis plan."
            if fixed
            else "No locked plan fixes the stopping rule: the defaults are used, and stopping "
            "on them is not pre-registered."
        ),
    }


VERDICT_VALUE = {"judge=error": 1.0, "judge=correct": 0.0, "judge=unsure": 0.5}


def _verdict_value(key: str) -> float:
    """The judge's verdict a stratified-PPI stratum key ends with, as a prediction."""
    return VERDICT_VALUE.get(key.rsplit(" | ", 1)[-1], 0.5)


def stratified_ppi_section(audit: Audit, confidence_level: float = 0.95) -> dict[str, Any]:
    """Per batch drawn with the stratified PPI design: each arm's error rate by the
    stratified PPI estimator (``auditapp.agreement.stratified``) with the design's strata
    and their population sizes, beside the Hájek expert-only estimate from the same labels.

    The judge's verdict defines the strata and is constant within each, so within a stratum
    PPI's correction is the stratum's expert mean and the estimate is Σ W_h ȳ_h; what the
    judge buys is the allocation (more labels where its verdicts are less reliable) and the
    weights. Cluster-robust over traces."""
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    batches = []
    for info, units in batch_units_collect(audit, design="stratified-ppi"):
        strata = {s["key"]: s for s in info["strata"]}
        rows, estimates = [], {}
        for code in sorted({s["condition"] for s in strata.values()}):
            keys = [k for k, s in strata.items() if s["condition"] == code and s["population"]]
            mine = units[units["stratum"].isin(keys)]
            arm = info["condition_labels"].get(code, code)
            row: dict[str, Any] = {"condition": arm, "n_labelled": len(mine)}
            missing = [k for k in keys if k not in set(mine["stratum"])]
            if mine.empty or missing:
                row["note"] = (
                    "no labels yet" if mine.empty else f"{len(missing)} strata without labels"
                )
                rows.append(row)
                continue
            f_all = np.concatenate(
                [np.full(strata[k]["population"], _verdict_value(k)) for k in keys]
            )
            h_all = np.concatenate(
                [np.full(strata[k]["population"], k, dtype=object) for k in keys]
            )
            traces = mine["trace"].astype(str).to_numpy()
            # The population's steps need no trace ids: with f constant within a stratum
            # their terms are 0, so each may be its own cluster.
            est = stratified_ppi_mean(
                mine["y"].to_numpy(),
                mine["stratum"].map(_verdict_value).to_numpy(),
                mine["stratum"].to_numpy(),
                f_all,
                h_all,
                clusters=traces,
                clusters_all=np.arange(f_all.size).astype(str),
                confidence_level=confidence_level,
            )
            expert = ppi_mean(
                mine["y"].to_numpy(),
                np.zeros(len(mine)),
                np.zeros(1),
                weights=1.0 / mine["inclusion_probability"].to_numpy(),
                clusters=traces,
                clusters_all=np.array(["population"]),
                lam=0.0,
                confidence_level=confidence_level,
            )
            estimates[arm] = est
            row.update(
                estimate=est.estimate,
                ci_low=est.ci_low,
                ci_high=est.ci_high,
                se=est.se,
                strata=len(keys),
                hajek_expert_only=expert.estimate,
                hajek_ci_low=expert.ci_low,
                hajek_ci_high=expert.ci_high,
            )
            rows.append(row)
        gaps = []
        for a, b in itertools.combinations(sorted(estimates), 2):
            gap = estimates[a].estimate - estimates[b].estimate
            half = z * float(np.hypot(estimates[a].se, estimates[b].se))
            gaps.append(
                {
                    "condition_a": a,
                    "condition_b": b,
                    "gap": gap,
                    "ci_low": gap - half,
                    "ci_high": gap + half,
                }
            )
        batches.append({"batch": info["name"], "rows": rows, "differences": gaps})
    return {
        "batches": batches,
        "rule": "Stratified PPI (Fisch et al. 2024) with the batch's strata (condition × the "
        "judge's verdict) and their population sizes: Σ_h W_h ȳ_h, W_h = N_h / N, "
        "cluster-robust over traces; beside it the Hájek expert-only estimate (weights 1/π).",
    }


def _annotators_section(
    audit: Audit,
    labels: pd.DataFrame,
    confidence_level: float,
    excluded: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Per expert: gold accuracy, hidden-repeat consistency, speed, abstention, agreement
    with every other evaluator (``auditapp.agreement.annotators``).

    Every expert is listed, the excluded ones too, so that an exclusion can be checked against
    the evidence; ``excluded`` (evaluator → why) marks them."""
    items = annotator_items_collect(audit)
    thresholds = QualityThresholds()
    excluded = excluded or {}
    if items.empty:
        quality, agreement = [], []
    else:
        quality = _records(
            annotator_quality(items, thresholds=thresholds, confidence_level=confidence_level)
        )
        for row in quality:
            row["excluded"] = excluded.get(str(row["evaluator"]), "")
        shared = labels.dropna(subset=["step_id"]) if "step_id" in labels else labels.iloc[:0]
        experts = shared[shared["evaluator_kind"] == "expert"]
        agreement = _records(
            annotator_agreement(
                experts.rename(columns={"step_id": "unit"}),
                shared.rename(columns={"step_id": "unit"}),
            )
        )
    return {
        "quality": quality,
        "agreement": agreement,
        "thresholds": asdict(thresholds),
        "rule": (
            f"Flagged when the evidence falls short of a threshold: gold accuracy whose whole "
            f"{confidence_level:.0%} Wilson interval lies below {thresholds.gold_accuracy:g}; "
            f"hidden-repeat agreement below {thresholds.repeat_agreement:g}; a median below "
            f"{thresholds.min_median_seconds:g} s per item; abstaining on more than "
            f"{thresholds.max_abstain_share:.0%} of items. 'watch': the point estimate falls "
            "short but the interval still reaches the threshold. A flag excludes nobody. "
            "'excluded': the locked plan or a study's attention checks left the expert's "
            "labels out of every estimate; they stay listed here (and in the agreement "
            "table) so the exclusion can be checked."
        ),
    }


def first_error_omitted(reason: str) -> dict[str, Any]:
    """The first-error section when it has nothing to say, and why (one line)."""
    return {
        "omitted": reason,
        "rule": FIRST_ERROR_RULE,
        "interval_rule": INTERVAL_RULE,
        "rows": [],
        "coverage": [],
        "findings": [],
    }


def _first_error_section(audit: Audit, labels: pd.DataFrame, params: ReportParams) -> dict:
    """ProcessBench's metric for every evaluator against the expert reference, read from the
    step labels (``auditapp.agreement.first_error``); omitted, with the reason, when no
    evaluator labelled in first-error mode or no trace has a reference."""
    modes = evaluator_modes(labels, judge_modes_collect(audit))
    if "first_error" not in modes.values():
        return first_error_omitted("no expert or judge labelled in first-error mode")
    kinds = (
        labels[["evaluator", "evaluator_kind"]]
        .drop_duplicates("evaluator")
        .set_index("evaluator")["evaluator_kind"]
        .astype(str)
        .to_dict()
    )
    if "expert" not in kinds.values():
        return first_error_omitted("no expert labels, so no reference first error")
    positions = step_positions_collect(audit).set_index("step_id")
    rows = labels.dropna(subset=["step_id"])
    at = positions.index.get_indexer(rows["step_id"].astype(str))
    rows = rows[at >= 0]
    at = at[at >= 0]
    # One unit per (trace, segmentation): a first error is a position under one segmentation.
    unit = rows["trace_id"].astype(str) + "\x1f" + rows["segmentation"].astype(str)
    verdicts = pd.DataFrame(
        {
            "trace": unit.to_numpy(),
            "position": positions["position"].to_numpy()[at],
            "verdict": rows["verdict"].to_numpy(),
            "evaluator": rows["evaluator"].astype(str).to_numpy(),
        }
    )
    n_steps = (
        pd.Series(positions["n_steps"].to_numpy()[at], index=verdicts["trace"])
        .groupby(level=0)
        .first()
    )
    conditions = (
        pd.Series(rows["condition"].astype(str).to_numpy(), index=verdicts["trace"])
        .groupby(level=0)
        .first()
        .to_dict()
    )
    result = first_error_evaluation(
        verdicts,
        evaluator_kinds=kinds,
        conditions=conditions,
        n_steps=n_steps,
        modes=modes,
        confidence_level=params.confidence_level,
        # Its own stream: the section never moves a number of the other sections.
        rng=np.random.default_rng([params.seed, 13]),
        resamples=params.resamples,
    )
    if not any(r["n"] for r in result["rows"]):
        return first_error_omitted(
            "no trace has full coverage: no trace has both an expert reference first error "
            "(every step labelled up to it) and a defined first error of another evaluator"
        )
    findings = [
        {
            "evaluator": r["evaluator"],
            "sentence": first_error_sentence(r, confidence_level=params.confidence_level),
            "rule": FIRST_ERROR_RULE,
            "table": "first_error",
        }
        for r in result["rows"]
        if r["condition"] == "(all)"
    ]
    return {
        "omitted": None,
        "rule": FIRST_ERROR_RULE,
        "interval_rule": INTERVAL_RULE,
        "rows": result["rows"],
        "coverage": result["coverage"],
        "findings": findings,
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN → None)."""
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def _normaliser_method(audit: Audit) -> str:
    versions = dict(
        Step.objects.filter(audit=audit)
        .values("blinding_version")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("blinding_version", "n")
    )
    return normaliser_description(
        normalise=audit.style_normalisation,
        version=audit.normaliser_version,
        rules=audit.normaliser_rules,
        step_versions=versions,
    )


def resolve_params(*, audit: Audit | None, **given: Any) -> ReportParams:
    """Explicit values win; then the locked plan's; then the report defaults."""
    plan = analysis_plan_get(audit=audit) if audit is not None else None
    base = plan_params(plan.plan) if plan else ReportParams()
    return replace(base, **{k: v for k, v in given.items() if v is not None}).check()


def report_build(
    *,
    audit: Audit,
    seed: int | None = None,
    resamples: int | None = None,
    ece_bins: int | None = None,
    abstain_rule: str | None = None,
    confidence_level: float | None = None,
    tables: AuditTables | None = None,
) -> dict[str, Any]:
    """Collect the audit's tables, compute every statistic, and add audit, blinding and plan.

    Settings left as None come from the locked analysis plan if there is one, otherwise the
    report defaults; the plan's exclusions always apply. ``analysis_plan.followed`` says
    whether the settings used are the planned ones.
    """
    params = resolve_params(
        audit=audit,
        seed=seed,
        resamples=resamples,
        ece_bins=ece_bins,
        abstain_rule=abstain_rule,
        confidence_level=confidence_level,
    )
    plan = analysis_plan_get(audit=audit)
    tables = tables or audit_tables_collect(audit, seed=params.seed)
    labels = (
        _exclude(tables.labels, plan.plan["exclusions"], audit=audit) if plan else tables.labels
    )
    participants = study_exclusions(audit=audit)
    labels, ratings = _without_excluded_participants(labels, tables.ratings, participants)
    body = _compute(
        labels,
        tables.answers,
        ratings,
        params,
        texts=tables.texts,
        guesses=tables.guesses,
        hedging_terms=tuple(audit.hedging_terms or ()),
    )
    blinding = {**_blinding_section(audit), **_probe_public(body.pop("blinding"), audit=audit)}
    body["methods"]["normaliser"] = _normaliser_method(audit)
    body["annotators"] = _annotators_section(
        audit, tables.labels, params.confidence_level, _excluded_experts(plan, participants)
    )
    body["first_error"] = _first_error_section(audit, labels, params)
    body["methods"]["first_error"] = f"{FIRST_ERROR_RULE} {INTERVAL_RULE}"
    body["sequential"] = sequential_section(audit, plan, seed=params.seed)
    body["stratified_ppi"] = stratified_ppi_section(audit, params.confidence_level)
    return {
        # Findings first: what the report concludes, then what it is about.
        "findings": body.pop("findings"),
        "audit": {
            "slug": audit.slug,
            "name": audit.name,
            "kind": audit.kind,
            "sources": tables.sources,
            "n_labels_used": len(labels),
            "n_ratings_used": 0 if ratings is None else len(ratings),
        },
        # Participants flagged by a study's attention checks: their data are kept in the
        # database and the exports, but leave every statistic here (docs/studies.md).
        "exclusions": {
            "rule": "participants failing more attention checks than the study allows",
            "participants": participants,
        },
        "generated_at": timezone.now().isoformat(),
        "parameters": asdict(params),
        "blinding": blinding,
        "analysis_plan": _plan_section(plan, params),
        **body,
    }


def _probe_public(section: dict[str, Any], *, audit: Audit) -> dict[str, Any]:
    """The blinding check as a blinded reader may see it.

    Probe labels are neutral but mapped to the arms by the admin (and older audits' options
    named them), so while the audit is blinded the answers per blind code would tell which
    code is which arm. Until unblinding every answer except a don't-know is shown as
    "option N", numbered by a permutation drawn from the audit's secret seed (not the order
    an admin typed them).
    """
    if audit.unblinded_at is not None:
        return {**section, "options_hidden": False}
    dont_know = {d.strip().casefold() for d in DONT_KNOW}
    seen = {
        option
        for row in section.get("index") or []
        for option in row.get("options", {})
        if option.strip().casefold() not in dont_know
    }
    options = sorted(seen | {str(a["label"]) for a in audit.probe_arms or []})
    digest = hashlib.sha256(f"{audit.blinding_seed}:probe".encode()).digest()
    order = np.random.default_rng(int.from_bytes(digest[:8], "big")).permutation(len(options))
    alias = {option: f"option {int(n) + 1}" for option, n in zip(options, order, strict=True)}

    def shown(option: str) -> str:
        return alias.get(option, option)

    index = [
        {
            **row,
            "options": dict(sorted((shown(k), v) for k, v in (row.get("options") or {}).items())),
        }
        for row in section.get("index") or []
    ] or section.get("index")
    guesses = section.get("guesses")
    if guesses:
        guesses = {**guesses, "unmapped_options": sorted(map(shown, guesses["unmapped_options"]))}
    notes = [n for n in section.get("notes", []) if not n.startswith("index: Bang")]
    if guesses and not guesses["mapped"]:
        notes.append(
            "index: Bang's index needs every answer to name a condition or be a don't-know "
            "(the options are shown after unblinding)"
        )
    return {**section, "index": index, "guesses": guesses, "notes": notes, "options_hidden": True}


def _compute(
    labels: pd.DataFrame,
    answers: pd.DataFrame | None,
    ratings: pd.DataFrame | None,
    params: ReportParams,
    *,
    texts: pd.DataFrame | None = None,
    guesses: pd.DataFrame | None = None,
    hedging_terms: tuple[str, ...] = (),
) -> dict[str, Any]:
    try:
        return report_compute(
            labels,
            answers if answers is not None and not answers.empty else None,
            ratings if ratings is not None and not ratings.empty else None,
            rng=np.random.default_rng(params.seed),
            resamples=params.resamples,
            ece_bins=params.ece_bins,
            abstain_rule=params.abstain_rule,
            confidence_level=params.confidence_level,
            texts=texts,
            guesses=guesses,
            hedging_terms=hedging_terms,
        )
    except ValueError as exc:
        raise ApplicationError(str(exc), code="invalid_table") from exc


def report_from_files(
    labels_path: str | os.PathLike[str],
    answers_path: str | os.PathLike[str] | None = None,
    ratings_path: str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    resamples: int | None = None,
    ece_bins: int | None = None,
    abstain_rule: str | None = None,
    confidence_level: float | None = None,
) -> dict[str, Any]:
    """The same report from CSV files in the long formats (no database, no blinding)."""
    params = resolve_params(
        audit=None,
        seed=seed,
        resamples=resamples,
        ece_bins=ece_bins,
        abstain_rule=abstain_rule,
        confidence_level=confidence_level,
    )
    tables = {}
    for name, path, reader in (
        ("labels", labels_path, labels_read),
        ("answers", answers_path, answers_read),
        ("ratings", ratings_path, ratings_read),
    ):
        if path is None:
            tables[name] = None
            continue
        try:
            tables[name] = reader(path)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise ApplicationError(
                f"cannot read the {name} file {os.fspath(path)!r}: {exc}", code="unreadable"
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise ApplicationError(
                f"the {name} file {os.fspath(path)!r} is empty", code="unreadable"
            ) from exc
        except ValueError as exc:
            raise ApplicationError(f"{name} file: {exc}", code="invalid_table") from exc
    body = _compute(tables["labels"], tables["answers"], tables["ratings"], params)
    return {
        "findings": body.pop("findings"),
        "audit": None,
        "files": {
            "labels": os.path.basename(os.fspath(labels_path)),
            "answers": os.path.basename(os.fspath(answers_path)) if answers_path else None,
            "ratings": os.path.basename(os.fspath(ratings_path)) if ratings_path else None,
        },
        "generated_at": timezone.now().isoformat(),
        "parameters": asdict(params),
        "analysis_plan": {"locked": False, "followed": None, "deviations": []},
        **body,
        "first_error": first_error_omitted(
            "a labels file carries no step positions, which a first-error index needs"
        ),
    }


def agreement_stats_from_csv(
    source: Any,
    *,
    unit: str,
    rater: str,
    value: str,
    level: str = "nominal",
    name: str = "the file",
) -> dict[str, Any]:
    """Agreement coefficients of any long CSV table (one row per unit × rater).

    Rows with an empty value are missing ratings (Krippendorff's alpha allows them). The
    result is :func:`auditapp.agreement.coefficients.agreement_summary` plus the columns used.
    """
    from auditapp.agreement.coefficients import agreement_summary

    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ApplicationError(f"level must be nominal, ordinal, interval or ratio, not {level!r}")
    try:
        # An exported table comes back with its neutralised formulas undone.
        frame = csv_text_restore(pd.read_csv(source))
    except pd.errors.EmptyDataError:
        raise ApplicationError(f"{name} is empty", code="unreadable") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ApplicationError(
            f"{name} is not a readable CSV file: {exc}", code="unreadable"
        ) from None
    missing = [c for c in (unit, rater, value) if c not in frame.columns]
    if missing:
        raise ApplicationError(
            f"{name} has no column(s) {', '.join(map(repr, missing))}; "
            f"its columns are {', '.join(map(repr, map(str, frame.columns)))}",
            code="missing_column",
        )
    table = frame[[unit, rater, value]].dropna(subset=[value])
    table = table.assign(**{unit: table[unit].astype(str), rater: table[rater].astype(str)})
    if level in ("interval", "ratio"):
        numbers = pd.to_numeric(table[value], errors="coerce")
        if numbers.isna().any():
            bad = table[value][numbers.isna()].iloc[0]
            raise ApplicationError(
                f"level {level!r} needs numbers in column {value!r}; found {bad!r}",
                code="invalid_table",
            )
        table = table.assign(**{value: numbers})
    if table.empty:
        raise ApplicationError(f"{name} has no ratings in column {value!r}", code="invalid_table")
    try:
        summary = agreement_summary(table, unit=unit, rater=rater, value=value, level=level)
    except (ValueError, TypeError) as exc:
        raise ApplicationError(str(exc), code="invalid_table") from exc
    return {**summary, "unit": unit, "rater": rater, "value": value}


def audit_settings_fingerprint(audit: Audit) -> str:
    """A hash of every audit setting (``AUDIT_SPEC_FIELDS``): a changed setting is a new key."""
    values = {name: getattr(audit, name, None) for name in AUDIT_SPEC_FIELDS}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def report_cache_key(*, audit: Audit, params: ReportParams) -> str:
    plan = analysis_plan_get(audit=audit)
    state = {
        "v": REPORT_VERSION,
        "audit": audit.pk,
        # The labels a report shows for conditions (codes or names): a recreated audit with
        # the same pk and counts still gets its own key.
        "conditions": condition_labels(audit),
        "seed": hashlib.sha256(audit.blinding_seed.encode()).hexdigest(),
        "tables": tables_fingerprint(audit),
        # A participant flagged by an attention check leaves the statistics: a new key.
        "excluded": [p["assignment"] for p in study_exclusions(audit=audit)],
        # The audit's own settings (hedging terms, probe options, normaliser, ...).
        "settings": audit_settings_fingerprint(audit),
        "plan": plan.sha256 if plan else None,
        "params": asdict(params),
    }
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()
    return f"reports:report:{audit.pk}:{digest}"


def report_cached(
    *,
    audit: Audit,
    seed: int | None = None,
    resamples: int | None = None,
    ece_bins: int | None = None,
    abstain_rule: str | None = None,
    confidence_level: float | None = None,
) -> dict[str, Any]:
    """:func:`report_build`, cached under the audit's state and the settings.

    The key holds the blinding state, the plan hash, the settings, the audit's settings and
    count/max-id/last-change aggregates of every table the report reads, so any new or
    revised label, verdict, rating, batch or setting (and unblinding) makes a new key; stale
    entries simply expire.
    """
    return report_cached_keyed(
        audit=audit,
        seed=seed,
        resamples=resamples,
        ece_bins=ece_bins,
        abstain_rule=abstain_rule,
        confidence_level=confidence_level,
    )[1]


def report_cached_keyed(
    *,
    audit: Audit,
    seed: int | None = None,
    resamples: int | None = None,
    ece_bins: int | None = None,
    abstain_rule: str | None = None,
    confidence_level: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """:func:`report_cached` and its cache key (the audit's data version with the settings),
    for what is derived from the report and cached beside it (the page's rendered body)."""
    audit.refresh_from_db(fields=["unblinded_at", "unblinded_by"])
    params = resolve_params(
        audit=audit,
        seed=seed,
        resamples=resamples,
        ece_bins=ece_bins,
        abstain_rule=abstain_rule,
        confidence_level=confidence_level,
    )
    key = report_cache_key(audit=audit, params=params)
    report = cache.get(key)
    if report is None:
        report = report_build(audit=audit, **asdict(params))
        cache.set(key, report, CACHE_SECONDS)
    return key, report
