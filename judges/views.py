"""Server-rendered judge pages. POSTs go through a form and the same services as the API."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotations.models import Audit
from annotations.roles import user_is_researcher_or_admin
from auditapp.exceptions import ApplicationError
from judges.forms import RunStartForm
from judges.selectors import run_condition_summary, run_get, run_list, run_progress
from judges.services import (
    judge_get,
    reference_run_create,
    run_cancel,
    run_create,
    run_pause,
    run_resume,
)
from judges.services.probe import judge_check


def _require_researcher(request) -> None:
    if not user_is_researcher_or_admin(request.user):
        raise PermissionDenied


@login_required
def runs_page(request, slug: str):
    _require_researcher(request)
    audit = get_object_or_404(Audit, slug=slug)
    form = RunStartForm(request.POST or None, audit=audit)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            judge = judge_get(name=form.cleaned_data["judge"])
            if judge.is_reference:
                run = reference_run_create(
                    audit=audit, segmentation=form.cleaned_data["segmentation"], user=request.user
                )
            else:
                run = run_create(
                    audit=audit,
                    judge=judge,
                    segmentation=form.cleaned_data["segmentation"],
                    batch_name=form.cleaned_data["batch"],
                    user=request.user,
                    label_mode=form.cleaned_data["label_mode"] or None,
                )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Run {run.pk} started ({run.total} steps).")
            return redirect("judges:runs", slug=audit.slug)
    if form.errors:
        status = 400
    runs = list(run_list(audit=audit)[:50])
    rows = [{"progress": run_progress(r), "conditions": run_condition_summary(r)} for r in runs]
    data = {
        "api": reverse("judges-api:runs"),
        "runs": [row["progress"] for row in rows],
    }
    return render(
        request,
        "judges/runs_page.html",
        {"audit": audit, "form": form, "rows": rows, "page_data": data},
        status=status,
    )


_ACTIONS = {"pause": run_pause, "resume": run_resume, "cancel": run_cancel}


@login_required
@require_POST
def run_action(request, run_id: int, action: str):
    _require_researcher(request)
    run = run_get(run_id=run_id)
    service = _ACTIONS.get(action)
    if run is None or service is None:
        raise PermissionDenied
    try:
        service(run=run)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("judges:runs", slug=run.audit.slug)


@login_required
def judge_page(request, name: str):
    """A judge's settings, with a button that probes its server (``manage.py judge_check``)."""
    _require_researcher(request)
    try:
        judge = judge_get(name=name)
    except ApplicationError as exc:
        return render(request, "judges/judge_page.html", {"error": exc.message}, status=404)
    report, error, status = None, "", 200
    if request.method == "POST":
        try:
            report = judge_check(judge=judge)
        except ApplicationError as exc:
            error, status = exc.message, 400
    settings = judge.settings_record()
    return render(
        request,
        "judges/judge_page.html",
        {"judge": judge, "settings": settings, "report": report, "error": error},
        status=status,
    )
