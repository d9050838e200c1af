from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from annotations.forms import AssignForm, BatchForm, ImportForm, ReassignForm
from annotations.models import TRACE_MODES, Assignment, Audit, Batch
from annotations.roles import ANNOTATOR_ROLES, user_is_annotator, user_is_researcher_or_admin
from annotations.selectors.blinded import (
    assignment_get_for_clinician,
    assignment_list_for_clinician,
    item_get_blinded,
    trace_get_blinded,
)
from annotations.selectors.progress import assignment_progress_list, audit_progress
from annotations.selectors.users import annotators_get_by_usernames
from annotations.serializers import blinded_item_output, blinded_trace_output
from annotations.services.batches import (
    assignment_reassign,
    batch_assign,
    batch_build,
    batch_preview,
    batch_wave_release,
)
from annotations.services.import_jobs import import_job_create, import_job_get, import_job_progress
from annotations.services.labels import assignment_reopen
from annotations.services.leak_gate import batch_leak_check
from annotations.services.planner import batch_planner
from annotations.services.probe import end_probe_get, end_probe_save
from auditapp.exceptions import ApplicationError, ImportRejected, NotFoundError


@login_required
def home(request):
    if user_is_researcher_or_admin(request.user):
        audits = Audit.objects.all()
        return render(request, "annotations/home_staff.html", {"audits": audits})
    if user_is_annotator(request.user):
        return redirect("annotations:my-assignments")
    return render(request, "annotations/home_norole.html")


@staff_member_required
def import_page(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    problems = []
    status = 200
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = import_job_create(
                    audit=audit,
                    user=request.user,
                    filename=upload.name,
                    chunks=upload.chunks(),
                    segmenter_names=form.cleaned_data["segmenters"],
                    skip_existing=form.cleaned_data["skip_existing"],
                    file_format=form.cleaned_data["format"] or "auto",
                    condition=form.cleaned_data["condition"],
                )
            except ImportRejected as exc:
                problems, status = exc.problems, exc.status_code
            else:
                return redirect("annotations:import-job", job_id=job.pk)
        else:
            status = 400  # the form itself (no file, an unknown segmenter)
    else:
        form = ImportForm()
    return render(
        request,
        "annotations/import_form.html",
        {"audit": audit, "form": form, "problems": problems},
        status=status,
    )


@staff_member_required
def import_job_page(request, job_id: int):
    try:
        job = import_job_get(job_id=job_id)
    except NotFoundError:
        raise Http404 from None
    return render(
        request, "annotations/import_job.html", {"job": job, "progress": import_job_progress(job)}
    )


# --- clinicians: pages built from the blinded selector only -------------------------------
def _clinician_only(request) -> None:
    if not user_is_annotator(request.user):
        raise Http404


@login_required
def my_assignments(request):
    if not user_is_annotator(request.user):
        return render(request, "annotations/home_norole.html")
    assignments = assignment_list_for_clinician(clinician=request.user)
    return render(request, "annotations/assignment_list.html", {"assignments": assignments})


@login_required
def assignment_resume(request, public_id: str):
    """Land on the first item not yet done (or the first item once all are)."""
    _clinician_only(request)
    summary = _summary_or_404(request, public_id)
    position = summary.first_open_position or 1
    return redirect("annotations:label", public_id=public_id, position=position)


def _summary_or_404(request, public_id: str):
    try:
        return assignment_get_for_clinician(clinician=request.user, assignment_public_id=public_id)
    except NotFoundError:
        raise Http404 from None


@login_required
def label_page(request, public_id: str, position: int):
    _clinician_only(request)
    try:
        item = item_get_blinded(
            clinician=request.user, assignment_public_id=public_id, position=position
        )
        if item.mode in TRACE_MODES:
            # Trace modes: the item's whole trace on one page.
            trace = trace_get_blinded(
                clinician=request.user, assignment_public_id=public_id, position=position
            )
            return redirect("annotations:trace", public_id=public_id, number=trace.number)
    except NotFoundError:
        raise Http404 from None
    data = blinded_item_output(item)
    data["urls"] = {
        "api": reverse("annotations-api:api-my-item", args=[public_id, position]),
        "assignment_api": reverse("annotations-api:api-my-assignment", args=[public_id]),
        "submit_api": reverse("annotations-api:api-assignment-submit", args=[public_id]),
        "page": reverse("annotations:label", args=[public_id, 0]).removesuffix("0/"),
        "list": reverse("annotations:my-assignments"),
    }
    template = (
        "annotations/rating_page.html" if item.kind == "trace" else ("annotations/label_page.html")
    )
    return render(request, template, {"item": item, "data": data})


@login_required
def trace_page(request, public_id: str, number: int):
    """Trace modes: one whole trace, every step on one screen (trace_page.js)."""
    _clinician_only(request)
    try:
        trace = trace_get_blinded(
            clinician=request.user, assignment_public_id=public_id, number=number
        )
    except NotFoundError:
        raise Http404 from None
    data = blinded_trace_output(trace)
    data["urls"] = {
        "trace_api": reverse("annotations-api:api-my-trace", args=[public_id, number]),
        "first_error_api": reverse(
            "annotations-api:api-first-error-save", args=[public_id, number]
        ),
        "item_api": reverse("annotations-api:api-my-item", args=[public_id, 0]).removesuffix("0/"),
        "submit_api": reverse("annotations-api:api-assignment-submit", args=[public_id]),
        "page": reverse("annotations:trace", args=[public_id, 0]).removesuffix("0/"),
        "list": reverse("annotations:my-assignments"),
    }
    return render(request, "annotations/trace_page.html", {"trace": trace, "data": data})


@login_required
def end_probe_page(request, public_id: str):
    """The blinding question, once per assignment after its last item (a plain form)."""
    _clinician_only(request)
    try:
        probe = end_probe_get(annotator=request.user, assignment_public_id=public_id)
    except NotFoundError:
        raise Http404 from None
    if probe is None:
        raise Http404
    error = ""
    if request.method == "POST" and probe.available:
        answers = {
            item.position: request.POST.get(f"guess-{item.position}", "") for item in probe.items
        }
        if not all(answers.values()):
            error = 'Please answer for every text ("no idea" is an answer).'
        else:
            try:
                end_probe_save(
                    annotator=request.user, assignment_public_id=public_id, answers=answers
                )
            except ApplicationError as exc:
                error = str(exc)
            else:
                messages.success(request, "Thank you — your answers are saved.")
                return redirect("annotations:my-assignments")
    return render(
        request,
        "annotations/end_probe.html",
        {"probe": probe, "error": error},
        status=400 if error else 200,
    )


# --- admins: batches, assignment, progress -----------------------------------------------
def _clinician_names() -> list[str]:
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=[r.value for r in ANNOTATOR_ROLES])
        # Participants enrolled through a study link cannot sign in (no usable password):
        # their one assignment comes from the link, never from this list.
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)
    )


@staff_member_required
def batch_list_page(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    segmentations = sorted(audit.steps.order_by().values_list("segmentation", flat=True).distinct())
    plan = None
    form = BatchForm(
        request.POST or None, segmentations=segmentations, audit_mode=audit.labelling_mode
    )
    if request.method == "POST" and form.is_valid():
        options = dict(form.cleaned_data)
        name = options.pop("name")
        overlap = options.pop("overlap")
        share = options.pop("hidden_repeat_share")
        waves = options.pop("waves")
        try:
            if "create" in request.POST:
                batch = batch_build(
                    audit=audit,
                    name=name,
                    overlap=overlap,
                    hidden_repeat_share=share,
                    waves=waves,
                    created_by=request.user,
                    **{**options, "seed": options["seed"] or name},
                )
                messages.success(request, f"Batch {batch.name!r} created.")
                return redirect("annotations:batch", batch_id=batch.pk)
            plan = batch_preview(audit=audit, **{**options, "seed": options["seed"] or name})
        except ApplicationError as exc:
            form.add_error(None, exc.message)
    batches = audit.batches.annotate(n_items=Count("items", distinct=True)).order_by("-created_at")
    progress = audit_progress(audit=audit)
    return render(
        request,
        "annotations/batch_list.html",
        {"audit": audit, "form": form, "plan": plan, "batches": batches, "progress": progress},
    )


@staff_member_required
def batch_page(request, batch_id: int):
    batch = get_object_or_404(Batch.objects.select_related("audit"), pk=batch_id)
    clinicians = _clinician_names()
    assign_form = AssignForm(
        request.POST if "assign" in request.POST else None, clinicians=clinicians
    )
    if request.method == "POST":
        try:
            if "assign" in request.POST and assign_form.is_valid():
                annotators = annotators_get_by_usernames(
                    usernames=assign_form.cleaned_data["annotators"]
                )
                batch_assign(
                    batch=batch,
                    annotators=annotators,
                    due_date=assign_form.cleaned_data["due_date"],
                    confirm_leak=assign_form.cleaned_data["confirm_leak"],
                    confirmed_by=request.user,
                )
                messages.success(request, "Batch assigned.")
                return redirect("annotations:batch", batch_id=batch.pk)
            if "release_wave" in request.POST:
                release = batch_wave_release(batch=batch, by=request.user)
                reopened = f", {len(release.reopened)} reopened" if release.reopened else ""
                messages.success(
                    request,
                    f"Wave {release.wave} of {release.waves} released: "
                    f"{sum(release.items_added.values())} assignment items added{reopened}.",
                )
                return redirect("annotations:batch", batch_id=batch.pk)
            if "reopen" in request.POST:
                assignment = get_object_or_404(
                    Assignment, batch=batch, public_id=request.POST.get("assignment", "")
                )
                assignment_reopen(
                    assignment=assignment, by=request.user, note=request.POST.get("note", "")[:2000]
                )
                messages.success(
                    request,
                    f"Assignment {assignment.public_id} reopened: "
                    f"{assignment.annotator.get_username()} can change labels and submit again.",
                )
                return redirect("annotations:batch", batch_id=batch.pk)
            if "reassign" in request.POST:
                form = ReassignForm(request.POST, clinicians=clinicians)
                assignment = get_object_or_404(
                    Assignment, batch=batch, public_id=request.POST.get("assignment", "")
                )
                if form.is_valid():
                    (to,) = annotators_get_by_usernames(usernames=[form.cleaned_data["annotator"]])
                    new = assignment_reassign(assignment=assignment, to_annotator=to)
                    messages.success(
                        request, f"Unfinished work moved to {to.get_username()} ({new.public_id})."
                    )
                    return redirect("annotations:batch", batch_id=batch.pk)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect("annotations:batch", batch_id=batch.pk)
    planner, planner_error = _planner_for_page(request, batch)
    rows = assignment_progress_list(batch=batch)
    # The gate's figures before assignment (about 1 s on 2,000 items), so the admin sees what
    # leaks where the decision is made; after it, what was confirmed is on the batch.
    leak = None if rows else batch_leak_check(batch=batch)
    return render(
        request,
        "annotations/batch_detail.html",
        {
            "batch": batch,
            "rows": rows,
            "leak": leak,
            "assign_form": assign_form,
            "reassign_form": ReassignForm(clinicians=clinicians),
            "strata": batch.design.get("strata", []),
            "planner": planner,
            "planner_error": planner_error,
            "planner_judge": planner.judge
            if planner
            else request.GET.get("judge", "")[:200]
            or (batch.design.get("sampling") or {}).get("uncertainty", ""),
            "planner_half_width": request.GET.get("half_width", "0.05"),
        },
    )


def _planner_for_page(request, batch: Batch):
    """The planner when the page asks for it (a judge given) or the design names a judge."""
    judge = request.GET.get("judge", "").strip()[:200]
    if not judge and not (batch.design.get("sampling") or {}).get("uncertainty"):
        return None, ""
    try:
        half_width = float(request.GET.get("half_width", "0.05"))
    except ValueError:
        return None, "The half-width must be a number."
    try:
        return batch_planner(batch=batch, judge=judge, half_width=half_width), ""
    except ApplicationError as exc:
        return None, exc.message
