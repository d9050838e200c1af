"""Participant pages (the link's way through a study) and the admin's study pages.

Participant pages are plain forms (no script at all): each POST calls one service and
redirects to wherever the participant now is, so reloading, going back or a second tab lands
on the right page instead of doing anything twice. What they show comes from the blinded
selector (items) or the study's own texts; nothing else about the audit reaches them.
"""

import csv
import time

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, login
from django.db import transaction
from django.http import HttpResponse
from django.middleware.csrf import rotate_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.middleware import session_mark_signed_in
from annotations.models import Audit
from annotations.selectors.blinded import assignment_get_for_clinician, item_get_blinded
from annotations.serializers import blinded_item_output
from annotations.services.markdown import markdown_to_html
from auditapp.agreement.formats import csv_cell_safe
from auditapp.exceptions import ApplicationError, ImportRejected
from studies.forms import PeopleUploadForm, SetPasswordForm, StudyLinkForm
from studies.models import Participant, Study, StudyLink
from studies.selectors.overview import study_overview
from studies.services import enrolment as flow
from studies.services import setup
from studies.services.people import (
    links_csv,
    people_create,
    people_parse,
    sign_in_link_get,
    sign_in_link_use,
)

LOGIN_BACKEND = "django.contrib.auth.backends.ModelBackend"
OPENED_COOKIE = "studies_opened"


def _problem_page(request, error: ApplicationError, *, title: str = "This link cannot be used"):
    return render(
        request,
        "studies/problem.html",
        {"title": title, "message": error.message},
        status=error.status_code,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- participants --------------------------------------------------------------------------
def _stage_url(token: str, progress: flow.Progress) -> str:
    if progress.stage == "instructions":
        return reverse("studies:instructions", args=[token])
    if progress.stage == "practice":
        return reverse("studies:practice", args=[token, progress.practice.position])
    if progress.stage == "items":
        return reverse("studies:item", args=[token, progress.slot.number])
    if progress.stage == "labelling":
        return reverse("studies:steps", args=[token])
    if progress.stage == "questionnaire":
        return reverse("studies:questionnaire", args=[token])
    return reverse("studies:done", args=[token])


def _participant(request, token: str) -> tuple[StudyLink, Participant]:
    participant = flow.participant_for_user(token=token, user=request.user)
    return participant.link, participant


def _enter(request, participant: Participant) -> None:
    """Sign the visitor in as their participant account.

    What ``login()`` does to the session (a new key, the user, a new CSRF token, the session
    clocks) without its ``user_logged_in`` signal: that signal is for password sign-ins —
    django-axes logs each one and sweeps its table, and ``last_login`` is written — three
    statements per enrolment that protect nothing here (the link is not a password)."""
    user = participant.user
    if request.user.is_authenticated and request.user.pk == user.pk:
        return
    if SESSION_KEY in request.session:
        request.session.flush()  # someone else's session: nothing of it carries over
    elif request.session.session_key is not None:
        request.session.cycle_key()  # an anonymous session: a new key (no fixation)
    # else no session yet: the one saved with this answer is new anyway
    request.session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    request.session[BACKEND_SESSION_KEY] = LOGIN_BACKEND
    request.session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session_mark_signed_in(request=request)
    request.user = user
    rotate_token(request)


@require_http_methods(["GET"])
def study_entry(request, token: str):
    """The link itself: consent for a newcomer, the page they were on for someone back."""
    try:
        link = flow.link_get(token=token)
        raw_id = request.GET.get(link.platform_param)
        if raw_id is None and request.user.is_authenticated:
            mine = Participant.objects.filter(link=link, user=request.user).first()
            if mine is not None:
                return redirect("studies:resume", token=token)
        platform_id = flow.platform_id_check(link=link, value=raw_id)
        existing = flow.participant_find(link=link, platform_id=platform_id)
        if existing is not None:  # back again, maybe from another tab or device: resume
            _enter(request, existing)
            return redirect("studies:resume", token=token)
        flow.link_check_open(link=link)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    # A count of visitors, nothing about them. Seen links are remembered in a cookie, not the
    # session: a visitor who has not consented has no session row at all.
    seen = [v for v in request.COOKIES.get(OPENED_COOKIE, "").split(".") if v.isdigit()]
    first_visit = str(link.pk) not in seen
    if first_visit:
        flow.link_opened(link=link)
    response = render(
        request,
        "studies/consent.html",
        {
            "link": link,
            "title": link.study.audit.annotator_title,
            "consent": markdown_to_html(link.study.consent_text),
            "platform_id": platform_id,
        },
    )
    if first_visit:
        value = ".".join([*seen, str(link.pk)][-20:])
        response.set_cookie(
            OPENED_COOKIE,
            value,
            max_age=30 * 86400,
            secure=request.is_secure(),
            httponly=True,
            samesite="Lax",
        )
    return response


@require_http_methods(["GET", "POST"])
def study_consent(request, token: str):
    if request.method == "GET":  # a reload after consenting: wherever they are now
        return redirect("studies:resume", token=token)
    try:
        link = flow.link_get_for_consent(token=token)
        platform_id = flow.platform_id_check(link=link, value=request.POST.get("platform_id"))
        if request.POST.get("decision") == "decline":
            if flow.participant_find(link=link, platform_id=platform_id) is None:
                flow.link_declined(link=link)
            return render(
                request, "studies/declined.html", {"title": link.study.audit.annotator_title}
            )
        if request.POST.get("decision") != "accept":
            raise ApplicationError("Choose whether you agree to take part.", code="decision")
        participant, created = flow.participant_enrol(link=link, platform_id=platform_id)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    _enter(request, participant)
    if created:  # a newcomer's next page is known: spare them the hop through resume
        return redirect("studies:instructions", token=token)
    return redirect("studies:resume", token=token)


def study_resume(request, token: str):
    try:
        _, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    flow.step_checks_score(participant=participant)  # step studies, once submitted
    return redirect(_stage_url(token, flow.participant_progress(participant=participant)))


def _base(link: StudyLink, progress: flow.Progress | None = None) -> dict:
    context = {"link": link, "title": link.study.audit.annotator_title}
    if progress is not None:
        context.update(total=progress.total, done=progress.done)
    return context


@require_http_methods(["GET", "POST"])
def study_instructions(request, token: str):
    try:
        link, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    if request.method == "POST":
        flow.instructions_done(participant=participant)
        progress = flow.participant_progress(participant=participant)
        if progress.stage == "items":
            flow.items_started(participant=participant)
        return redirect(_stage_url(token, progress))
    study = link.study
    context = _base(link) | {
        "instructions": markdown_to_html(study.instructions or ""),
        "guidelines": markdown_to_html(study.audit.guidelines or ""),
        "n_practice": study.items.filter(kind="practice").count(),
    }
    return render(request, "studies/instructions.html", context)


def _likert(audit: Audit) -> list[dict]:
    if audit.kind != Audit.Kind.TRACE_RATINGS:  # a step's practice: the verdict, as one scale
        return [
            {
                "key": "verdict",
                "label": "Is this step correct?",
                "points": list(flow.VERDICTS),
                "min_label": "",
                "max_label": "",
            }
        ]
    return [
        {
            "key": str(i["key"]),
            "label": str(i.get("label", i["key"])),
            "points": list(range(int(i.get("min", 1)), int(i.get("max", 5)) + 1)),
            "min_label": str(i.get("min_label", "")),
            "max_label": str(i.get("max_label", "")),
        }
        for i in audit.likert_items
    ]


@require_http_methods(["GET", "POST"])
def study_practice(request, token: str, number: int):
    try:
        link, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    progress = flow.participant_progress(participant=participant)
    item = link.study.items.filter(kind="practice", position=number).first()
    if item is None:
        return redirect(_stage_url(token, progress))
    audit = link.study.audit
    context = _base(link) | {
        "item": item,
        "likert": _likert(audit),
        "shown_at": _now_ms(),
        "practice_total": link.study.items.filter(kind="practice").count(),
        "step": audit.kind != Audit.Kind.TRACE_RATINGS,
    }
    if request.method == "POST":
        try:
            answers = flow.likert_answers(audit=audit, data=request.POST)
        except ApplicationError as exc:
            context["error"] = exc.message
            return render(request, "studies/practice.html", context, status=400)
        response = flow.practice_answer(
            participant=participant,
            item=item,
            answers=answers,
            elapsed_ms=flow.elapsed_since(request.POST.get("shown_at")),
        )
        progress = flow.participant_progress(participant=participant)
        if progress.stage == "items":
            flow.items_started(participant=participant)
        context |= {
            "response": response,
            "expected": [
                (q["label"], item.answers[q["key"]], response.answers.get(q["key"]))
                for q in context["likert"]
                if q["key"] in item.answers
            ],
            "next_url": _stage_url(token, progress),
        }
        return render(request, "studies/practice.html", context)
    if progress.stage != "practice" or progress.practice.pk != item.pk:
        return redirect(_stage_url(token, progress))
    return render(request, "studies/practice.html", context)


@require_http_methods(["GET", "POST"])
def study_item(request, token: str, number: int):
    try:
        link, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    progress = flow.participant_progress(participant=participant)
    if progress.stage != "items" or progress.slot.number != number:
        # Done already (another tab, the back button) or not yet: where they are now.
        return redirect(_stage_url(token, progress))
    slot = progress.slot
    audit = link.study.audit
    error = None
    if request.method == "POST":
        try:
            answers = flow.likert_answers(audit=audit, data=request.POST)
            flow.slot_answer(
                participant=participant,
                slot=slot,
                answers=answers,
                comment=request.POST.get("comment", ""),
                elapsed_ms=flow.elapsed_since(request.POST.get("shown_at")),
            )
        except ApplicationError as exc:
            error = exc.message
        else:
            after = flow.progress_after(participant=participant, progress=progress, slot=slot)
            return redirect(_stage_url(token, after))
    if slot.check is None:
        item = item_get_blinded(
            clinician=participant.user,
            assignment_public_id=participant.assignment.public_id,
            position=slot.position,
        )
        question, options, texts = item.question, item.options, item.trace
        final_answer = item.final_answer
    else:  # an attention check looks like any other item
        question, options, texts = slot.check.question, (), (slot.check.text,)
        final_answer = ""
    context = _base(link, progress) | {
        "number": slot.number,
        "question": question,
        "options": options,
        "texts": texts,
        "final_answer": final_answer,
        "likert": _likert(audit),
        "shown_at": _now_ms(),
        "error": error,
        "posted": request.POST if error else {},
    }
    return render(request, "studies/item.html", context, status=400 if error else 200)


@require_http_methods(["GET"])
def study_steps(request, token: str, position: int | None = None):
    """A step-label study's items: the labelling page clinicians use (same blinded selector,
    same script and APIs), with its page and finish links pointing back into the study."""
    try:
        _, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    progress = flow.participant_progress(participant=participant)
    if progress.stage != "labelling":
        return redirect(_stage_url(token, progress))
    public_id = participant.assignment.public_id
    if position is None:
        summary = assignment_get_for_clinician(
            clinician=participant.user, assignment_public_id=public_id
        )
        return redirect("studies:step", token=token, position=summary.first_open_position or 1)
    try:
        item = item_get_blinded(
            clinician=participant.user, assignment_public_id=public_id, position=position
        )
    except ApplicationError as exc:
        return _problem_page(request, exc, title="No such item")
    flow.items_started(participant=participant)
    data = blinded_item_output(item)
    data["urls"] = {
        "api": reverse("annotations-api:api-my-item", args=[public_id, position]),
        "assignment_api": reverse("annotations-api:api-my-assignment", args=[public_id]),
        "submit_api": reverse("annotations-api:api-assignment-submit", args=[public_id]),
        "page": reverse("studies:step", args=[token, 0]).removesuffix("0/"),
        # After submitting: the attention checks are scored, then questionnaire or code.
        "list": reverse("studies:resume", args=[token]),
    }
    return render(
        request, "annotations/label_page.html", {"item": item, "data": data, "in_study": True}
    )


@require_http_methods(["GET", "POST"])
def study_questionnaire(request, token: str):
    try:
        link, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    flow.step_checks_score(participant=participant)
    progress = flow.participant_progress(participant=participant)
    if progress.stage != "questionnaire":
        return redirect(_stage_url(token, progress))
    study = link.study
    error = None
    if request.method == "POST":
        try:
            answers = flow.questionnaire_answers(study=study, data=request.POST)
        except ApplicationError as exc:
            error = exc.message
        else:
            flow.questionnaire_save(participant=participant, answers=answers)
            return redirect("studies:done", token=token)
    questions = [
        q | {"points": list(range(q["min"], q["max"] + 1))} if q["kind"] == "scale" else q
        for q in study.questionnaire
    ]
    context = _base(link, progress) | {"questions": questions, "error": error}
    return render(request, "studies/questionnaire.html", context, status=400 if error else 200)


def study_done(request, token: str):
    try:
        link, participant = _participant(request, token)
    except ApplicationError as exc:
        return _problem_page(request, exc)
    flow.step_checks_score(participant=participant)
    progress = flow.participant_progress(participant=participant)
    if progress.stage != "done":
        return redirect(_stage_url(token, progress))
    try:
        flow.participant_complete(participant=participant)
    except ApplicationError as exc:
        return _problem_page(request, exc, title="Not finished yet")
    return render(
        request,
        "studies/done.html",
        _base(link) | {"code": link.completion_code, "url": link.completion_url},
    )


# --- sign-in links (accounts made in bulk) -------------------------------------------------
@require_http_methods(["GET", "POST"])
def sign_in_page(request, token: str):
    try:
        link = sign_in_link_get(token=token)
    except ApplicationError as exc:
        return _problem_page(request, exc, title="Sign-in link")
    form = SetPasswordForm(request.POST or None, user=link.user)
    if request.method == "POST" and form.is_valid():
        try:
            user = sign_in_link_use(token=token, password=form.cleaned_data["password1"])
        except ApplicationError as exc:  # used in another tab meanwhile
            return _problem_page(request, exc, title="Sign-in link")
        login(request, user, backend=LOGIN_BACKEND)
        messages.success(request, "Your password is set; you are signed in.")
        return redirect("home")
    return render(
        request,
        "studies/sign_in.html",
        {"form": form, "username": link.user.get_username()},
        status=400 if request.method == "POST" else 200,
    )


# --- admins --------------------------------------------------------------------------------
@staff_member_required
@require_http_methods(["GET", "POST"])
def people_page(request):
    form = PeopleUploadForm(request.POST or None, request.FILES or None)
    problems = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            text = upload.read().decode("utf-8")
            rows = people_parse(text=text)
            issued = people_create(
                rows=rows,
                base_url=request.build_absolute_uri("/"),
                valid_hours=form.cleaned_data["valid_hours"],
            )
        except UnicodeDecodeError:
            form.add_error("file", "The file is not UTF-8 text.")
        except ImportRejected as exc:
            problems = exc.extra["problems"]
            form.add_error(None, exc.message)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            # The links exist in this one answer (no-store) and as digests in the database.
            response = HttpResponse(links_csv(issued=issued), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="sign-in-links.csv"'
            return response
    status = 400 if request.method == "POST" else 200
    return render(
        request, "studies/people.html", {"form": form, "problems": problems}, status=status
    )


@staff_member_required
def study_page(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    overview = study_overview(audit=audit)
    links = [
        {
            "link": link,
            "url": request.build_absolute_uri(reverse("studies:entry", args=[link.token]))
            + f"?{link.platform_param}={{{{%{link.platform_param}%}}}}",
        }
        for link in (overview.links if overview else [])
    ]
    return render(
        request,
        "studies/study_page.html",
        {"audit": audit, "overview": overview, "links": links},
    )


@staff_member_required
def study_csv(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    overview = study_overview(audit=audit)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{audit.slug}-participants.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "platform_id",
            "status",
            "excluded",
            "excluded_reason",
            "link",
            "enrolment_index",
            "consented_at",
            "items_started_at",
            "completed_at",
            "minutes",
            "items_done",
            "n_items",
            "stopped_at",
            "attention_checks",
            "attention_failures",
            "assignment",
        ]
    )
    for row in overview.rows if overview else []:
        writer.writerow(
            [
                csv_cell_safe(row.platform_id),
                row.status,
                int(row.excluded),
                row.excluded_reason,
                csv_cell_safe(row.link),
                row.enrolment_index,
                row.consented_at.isoformat(timespec="seconds"),
                row.items_started_at.isoformat(timespec="seconds") if row.items_started_at else "",
                row.completed_at.isoformat(timespec="seconds") if row.completed_at else "",
                "" if row.minutes is None else row.minutes,
                row.items_done,
                row.n_items,
                row.stopped_at,
                row.attention,
                row.attention_failures,
                row.assignment_public_id,
            ]
        )
    return response


def _study_and_link_create(request, audit, form, batches, study) -> None:
    data = form.cleaned_data
    settings = form.study_settings()
    if settings or study is None:
        setup.study_configure(audit=audit, settings=settings)
    setup.study_link_create(
        audit=audit,
        batch=next(b for b in batches if str(b.pk) == data["batch"]),
        capacity=data["capacity"],
        created_by=request.user,
        name=data["name"],
        opens_at=data["opens_at"],
        closes_at=data["closes_at"],
        platform_param=data["platform_param"],
        completion_code=data["completion_code"],
        completion_url=data["completion_url"],
        items_per_participant=data["items_per_participant"],
    )


@staff_member_required
@require_http_methods(["GET", "POST"])
def study_link_new(request, slug: str):
    audit = get_object_or_404(Audit, slug=slug)
    batches = list(audit.batches.order_by("-created_at"))
    study = Study.objects.filter(audit=audit).first()
    form = StudyLinkForm(request.POST or None, batches=batches)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # a refused link leaves no half-made study behind
                _study_and_link_create(request, audit, form, batches, study)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Study link created.")
            return redirect("studies:study", slug=audit.slug)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "studies/link_form.html",
        {"audit": audit, "form": form, "study": study},
        status=status,
    )


@staff_member_required
@require_POST
def study_link_close(request, link_id: int):
    link = get_object_or_404(StudyLink.objects.select_related("study__audit"), pk=link_id)
    setup.study_link_close(link=link)
    messages.success(request, "The link is closed: nobody new can enrol.")
    return redirect("studies:study", slug=link.study.audit.slug)
