"""The researcher's pages: the report per audit, its stand-alone HTML, plan lock, unblinding.

Every view goes through ``audit_get_for_report`` (researchers and admins; others 403), and
every POST calls the same service as the API.
"""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotations.roles import Role, user_has_role
from auditapp.agreement.planning import sample_size
from auditapp.exceptions import ApplicationError, ForbiddenError, NotFoundError
from reports.forms import PlanLockForm, PlannerForm, ReportSettingsForm, UnblindForm
from reports.render import report_html, report_page_parts
from reports.selectors import audit_get_for_report, audit_list_for_report
from reports.services import (
    CACHE_SECONDS,
    analysis_plan_lock,
    audit_unblind,
    report_cached,
    report_cached_keyed,
)


def _audit(request, slug: str):
    try:
        return audit_get_for_report(user=request.user, slug=slug)
    except ForbiddenError as exc:
        raise PermissionDenied(exc.message) from None
    except NotFoundError as exc:
        raise Http404(exc.message) from None


@login_required
def report_index(request):
    try:
        audits = audit_list_for_report(user=request.user)
    except ForbiddenError as exc:
        raise PermissionDenied(exc.message) from None
    return render(request, "reports/report_index.html", {"audits": audits})


def _planner(request) -> tuple[PlannerForm, dict | None, str]:
    if "p1" not in request.GET:
        return PlannerForm(), None, ""
    form = PlannerForm(request.GET)
    if not form.is_valid():
        return form, None, ""
    d = form.cleaned_data
    try:
        plan = sample_size(
            d["p1"],
            d["p2"],
            alpha=d["alpha"],
            power=d["power"],
            steps_per_trace=d["steps_per_trace"],
            icc=d["icc"],
        )
    except ValueError as exc:
        return form, None, str(exc)
    return form, asdict(plan), ""


@login_required
def audit_report_page(request, slug: str):
    audit = _audit(request, slug)
    settings_form = ReportSettingsForm(request.GET or None)
    settings = settings_form.settings() if request.GET else {}
    # Settings out of range: the page shows why by the field (400) with the default report.
    status = 400 if request.GET and not settings_form.is_valid() else 200
    try:
        key, report = report_cached_keyed(audit=audit, **settings)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        key, report = report_cached_keyed(audit=audit)
        settings, status = {}, 400
    query = {k: v for k, v in settings.items() if v is not None}
    query_string = ("?" + urlencode(query)) if query else ""
    download_base = reverse("reports-api:table-base", args=[audit.slug])
    planner_form, planner_result, planner_error = _planner(request)
    # The body (figures, tables) is rendered once per report version, then found in the cache.
    parts = report_page_parts(
        report, key=key, download_base=download_base, query=query_string, seconds=CACHE_SECONDS
    )
    context = {
        "report": report,
        "report_body": parts["body"],
        "table_names": parts["table_names"],
        "summary": parts["summary"],
    }
    context.update(
        {
            "audit": audit,
            "settings_form": settings_form,
            "query": query_string,
            "download_base": download_base,
            # The id mapping exists for researchers only once the audit is unblinded.
            "long_tables": ["labels", "answers", "ratings"]
            + ([] if audit.unblinded_at is None else ["pseudonyms"]),
            "planner_form": planner_form,
            "planner": planner_result,
            "planner_error": planner_error,
            "plan_form": PlanLockForm(),
            "unblind_form": UnblindForm(),
            "is_admin": user_has_role(request.user, Role.ADMIN),
        }
    )
    return render(request, "reports/audit_report.html", context, status=status)


@login_required
def audit_report_download(request, slug: str):
    """The stand-alone HTML report as a file (same settings as the page's query string)."""
    audit = _audit(request, slug)
    settings_form = ReportSettingsForm(request.GET or None)
    if request.GET and not settings_form.is_valid():
        reasons = "; ".join(
            f"{name}: {' '.join(errors)}" for name, errors in settings_form.errors.items()
        )
        return HttpResponse(reasons, status=400, content_type="text/plain; charset=utf-8")
    try:
        report = report_cached(audit=audit, **(settings_form.settings() if request.GET else {}))
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    response = HttpResponse(report_html(report), content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{audit.slug}-report.html"'
    return response


@login_required
@require_POST
def audit_plan_lock(request, slug: str):
    audit = _audit(request, slug)
    form = PlanLockForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"The plan was not locked: {form.errors.as_text()}")
        return redirect("reports:audit", slug=audit.slug)
    try:
        plan = analysis_plan_lock(audit=audit, user=request.user, plan=form.plan())
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Analysis plan locked (sha256 {plan.sha256[:16]}…).")
    return redirect("reports:audit", slug=audit.slug)


@login_required
@require_http_methods(["GET", "POST"])
def audit_unblind_page(request, slug: str):
    audit = _audit(request, slug)
    if not user_has_role(request.user, Role.ADMIN):
        raise PermissionDenied("only admins unblind an audit")
    form = UnblindForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            audit_unblind(
                audit=audit,
                user=request.user,
                confirm_slug=form.cleaned_data["confirm"],
                ip_address=request.META.get("REMOTE_ADDR"),
            )
        except ApplicationError as exc:
            form.add_error("confirm", exc.message)
            status = exc.status_code
        else:
            messages.success(request, "The audit is unblinded. This cannot be undone.")
            return redirect("reports:audit", slug=audit.slug)
    return render(
        request, "reports/audit_unblind.html", {"audit": audit, "form": form}, status=status
    )
