from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from annotations.forms import ImportForm
from annotations.models import Audit
from annotations.roles import Role, user_has_role, user_is_researcher_or_admin
from annotations.services.import_jobs import import_job_create, import_job_get, import_job_progress
from auditapp.exceptions import ImportRejected


@login_required
def home(request):
    if user_is_researcher_or_admin(request.user):
        audits = Audit.objects.all()
        return render(request, "annotations/home_staff.html", {"audits": audits})
    if user_has_role(request.user, Role.CLINICIAN):
        return redirect("annotations:my-assignments")
    return render(request, "annotations/home_norole.html")


@staff_member_required
def import_page(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    problems = []
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
                )
            except ImportRejected as exc:
                problems = exc.problems
            else:
                return redirect("annotations:import-job", job_id=job.pk)
    else:
        form = ImportForm()
    status = 400 if problems else 200
    return render(
        request,
        "annotations/import_form.html",
        {"audit": audit, "form": form, "problems": problems},
        status=status,
    )


@staff_member_required
def import_job_page(request, job_id: int):
    job = import_job_get(job_id=job_id)
    return render(
        request, "annotations/import_job.html", {"job": job, "progress": import_job_progress(job)}
    )


@login_required
def my_assignments(request):
    # Replaced by the labelling work (issue 3): the clinician's assignments with progress.
    return render(request, "annotations/home_norole.html")
