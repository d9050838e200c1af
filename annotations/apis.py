from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.audit_spec import AuditSpecSerializer
from annotations.models import Assignment, Audit, Batch
from annotations.permissions import IsAdmin, IsClinician, IsResearcherOrAdmin
from annotations.selectors.blinded import (
    assignment_get_for_clinician,
    assignment_list_for_clinician,
    assignment_overview_for_clinician,
    item_get_after_save_blinded,
    item_get_blinded,
    item_get_next_blinded,
    trace_get_blinded,
)
from annotations.selectors.progress import assignment_progress_list, audit_progress
from annotations.selectors.users import annotators_get_by_usernames
from annotations.serializers import (
    AssignmentDetailOutputSerializer,
    AssignmentEventOutputSerializer,
    AssignmentProgressOutputSerializer,
    AssignmentSummaryOutputSerializer,
    AuditOutputSerializer,
    AuditProgressOutputSerializer,
    BatchAssignInputSerializer,
    BatchCreateInputSerializer,
    BatchOutputSerializer,
    BatchPlanInputSerializer,
    BatchPlanOutputSerializer,
    BlindedItemOutputSerializer,
    EndProbeInputSerializer,
    EndProbeOutputSerializer,
    FirstErrorInputSerializer,
    ImportCreateInputSerializer,
    ImportJobOutputSerializer,
    LabelInputSerializer,
    LeakCheckOutputSerializer,
    OverviewEntryOutputSerializer,
    PlannerInputSerializer,
    PlannerOutputSerializer,
    RatingInputSerializer,
    ReassignInputSerializer,
    ReopenInputSerializer,
    SavedOutputSerializer,
    SkipOutputSerializer,
    WaveReleaseOutputSerializer,
    blinded_item_output,
    blinded_trace_output,
    saved_output,
)
from annotations.services.batches import (
    assignment_reassign,
    batch_assign,
    batch_build,
    batch_preview,
    batch_wave_release,
)
from annotations.services.first_error import first_error_mark
from annotations.services.import_jobs import (
    import_job_create,
    import_job_get,
    import_job_progress,
    import_upload_check_declared_size,
)
from annotations.services.labels import (
    assignment_done_count,
    assignment_reopen,
    assignment_submit,
    item_skip,
    label_save,
    rating_save,
)
from annotations.services.leak_gate import batch_leak_check
from annotations.services.planner import batch_planner
from annotations.services.probe import end_probe_get, end_probe_save
from auditapp.exceptions import ApplicationError, NotFoundError
from auditapp.openapi import error_responses

# ``?next=`` on a label PUT: the answer also carries the item to show next ("save & next" in
# one round trip). "unlabelled": the first item not yet done after this one (wrapping to the
# start); "following": the next position (revising), past the last one the first not done.
NEXT_MODES = ("unlabelled", "following")


class AuditListApi(APIView):
    """GET: the audits in brief (researchers and admins). POST: a new audit (admins), with
    the same settings and validation as ``create_audit FILE`` (annotations/audit_spec.py)."""

    def get_permissions(self):
        return [IsAdmin()] if self.request.method == "POST" else [IsResearcherOrAdmin()]

    @extend_schema(responses={200: AuditOutputSerializer(many=True)})
    def get(self, request):
        audits = Audit.objects.all()
        return Response(AuditOutputSerializer(audits, many=True).data)

    @extend_schema(
        request=AuditSpecSerializer,
        responses={201: AuditSpecSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = AuditSpecSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        audit = serializer.save()
        return Response(AuditSpecSerializer(audit).data, status=status.HTTP_201_CREATED)


class AuditDetailApi(APIView):
    """Every setting of one audit (admins); PATCH changes the settings given."""

    permission_classes = [IsAdmin]

    @extend_schema(responses={200: AuditSpecSerializer, **error_responses(404)})
    def get(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        return Response(AuditSpecSerializer(audit).data)

    @extend_schema(
        request=AuditSpecSerializer(partial=True),
        responses={200: AuditSpecSerializer, **error_responses(400, 404, 409)},
    )
    def patch(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        serializer = AuditSpecSerializer(instance=audit, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        audit = serializer.save()
        return Response(AuditSpecSerializer(audit).data)


def _import_fields(data) -> dict:
    """The import form as a plain dict, segmenters split at commas.

    Not ``request.data.copy()``: that deep-copies the upload too, and an upload over
    FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is an open temporary file, which cannot be copied.
    """
    names = ("file", "skip_existing", "format", "condition")
    fields = {name: data[name] for name in names if name in data}
    if "segmenter" in data:
        names: list = []
        for value in data.getlist("segmenter"):
            if isinstance(value, str):
                names.extend(n.strip() for n in value.split(",") if n.strip())
            else:
                names.append(value)  # a file sent as a segmenter: the serializer refuses it
        fields["segmenter"] = names
    return fields


class ImportCreateApi(APIView):
    """POST a JSONL or CSV file: 400 with every problem, or 202 with a job to poll."""

    permission_classes = [IsAdmin]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request=ImportCreateInputSerializer,
        responses={202: ImportJobOutputSerializer, **error_responses(400, 404, 413)},
    )
    def post(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        import_upload_check_declared_size(content_length=request.META.get("CONTENT_LENGTH"))
        serializer = ImportCreateInputSerializer(data=_import_fields(request.data))
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        job = import_job_create(
            audit=audit,
            user=request.user,
            filename=upload.name,
            chunks=upload.chunks(),
            segmenter_names=serializer.validated_data["segmenter"],
            skip_existing=serializer.validated_data["skip_existing"],
            file_format=serializer.validated_data["format"],
            condition=serializer.validated_data["condition"],
        )
        return Response(import_job_progress(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(responses={200: ImportJobOutputSerializer, **error_responses(404)})
    def get(self, request, job_id: int):
        return Response(import_job_progress(import_job_get(job_id=job_id)))


# --- clinicians: their own assignments, through the blinded selector only -------------------
class MyAssignmentListApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: AssignmentSummaryOutputSerializer(many=True)})
    def get(self, request):
        summaries = assignment_list_for_clinician(clinician=request.user)
        return Response(AssignmentSummaryOutputSerializer(summaries, many=True).data)


class MyAssignmentDetailApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: AssignmentDetailOutputSerializer, **error_responses(404)})
    def get(self, request, public_id: str):
        summary = assignment_get_for_clinician(
            clinician=request.user, assignment_public_id=public_id
        )
        overview = assignment_overview_for_clinician(
            clinician=request.user, assignment_public_id=public_id
        )
        data = AssignmentSummaryOutputSerializer(summary).data
        # The counts the submit confirmation names.
        data["labelled"] = sum(entry.done for entry in overview)
        data["skipped"] = sum(entry.skipped for entry in overview)
        data["flagged"] = sum(entry.flagged for entry in overview)
        data["items"] = OverviewEntryOutputSerializer(overview, many=True).data
        return Response(data)


class MyItemApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(responses={200: BlindedItemOutputSerializer, **error_responses(404)})
    def get(self, request, public_id: str, position: int):
        item = item_get_blinded(
            clinician=request.user, assignment_public_id=public_id, position=position
        )
        return Response(blinded_item_output(item))


class MyNextItemApi(APIView):
    """The first item not yet labelled, in the clinician's order; 204 when all are done."""

    permission_classes = [IsClinician]

    @extend_schema(
        responses={
            200: BlindedItemOutputSerializer,
            204: OpenApiResponse(description="Every item is done."),
            **error_responses(404),
        }
    )
    def get(self, request, public_id: str):
        item = item_get_next_blinded(clinician=request.user, assignment_public_id=public_id)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(blinded_item_output(item))


def _next_mode(request) -> str | None:
    mode = request.query_params.get("next")
    if mode is not None and mode not in NEXT_MODES:
        raise ApplicationError(
            "next must be one of: " + ", ".join(NEXT_MODES) + ".",
            code="next",
            extra={"choices": list(NEXT_MODES)},
        )
    return mode


def _next_item(request, public_id: str, position: int, mode: str) -> dict | None:
    item = item_get_after_save_blinded(
        clinician=request.user,
        assignment_public_id=public_id,
        position=position,
        following=mode == "following",
    )
    return None if item is None else blinded_item_output(item)


_NEXT_PARAMETER = OpenApiParameter(
    "next",
    OpenApiTypes.STR,
    enum=list(NEXT_MODES),
    description="Also answer the item to show next.",
)


class LabelSaveApi(APIView):
    """PUT the item's label: idempotent; a change is kept as a new revision.

    With ``?next=unlabelled`` or ``?next=following`` the answer also holds ``next``: the
    blinded item to show next (null when every item is done), so the page's "save & next"
    is one request."""

    permission_classes = [IsClinician]

    @extend_schema(
        request=LabelInputSerializer,
        parameters=[_NEXT_PARAMETER],
        responses={200: SavedOutputSerializer, **error_responses(400, 404, 409)},
    )
    def put(self, request, public_id: str, position: int):
        mode = _next_mode(request)
        serializer = LabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = label_save(
            annotator=request.user,
            assignment_public_id=public_id,
            position=position,
            **serializer.validated_data,
        )
        data = saved_output(position=position, revision=label.revision, elapsed_ms=label.elapsed_ms)
        if mode is None:
            # The page shows the server's count, never its own guess.
            data["done"] = assignment_done_count(assignment_id=label.assignment_id)
        else:
            data["next"] = _next_item(request, public_id, position, mode)
        return Response(data)


class MyTraceApi(APIView):
    """GET trace N of a trace-mode assignment (1-based, in the clinician's own order): the
    whole trace, blinded, with the clinician's own labels (and first-error mark)."""

    permission_classes = [IsClinician]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses(404)})
    def get(self, request, public_id: str, number: int):
        trace = trace_get_blinded(
            clinician=request.user, assignment_public_id=public_id, number=number
        )
        return Response(blinded_trace_output(trace))


class FirstErrorSaveApi(APIView):
    """PUT the first wrong step of trace N (or null: no error): idempotent; the step labels
    it implies are written with it (docs/labelling.md, "First-error mode")."""

    permission_classes = [IsClinician]

    @extend_schema(
        request=FirstErrorInputSerializer,
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 404, 409)},
    )
    def put(self, request, public_id: str, number: int):
        serializer = FirstErrorInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mark = first_error_mark(
            annotator=request.user,
            assignment_public_id=public_id,
            trace_number=number,
            **serializer.validated_data,
        )
        trace = trace_get_blinded(
            clinician=request.user, assignment_public_id=public_id, number=number
        )
        data = blinded_trace_output(trace)
        data["revision"] = mark.revision
        return Response(data)


class ItemSkipApi(APIView):
    """POST: skip the item (it stays unlabelled and comes back at the end). Idempotent."""

    permission_classes = [IsClinician]

    @extend_schema(
        request=None,
        parameters=[_NEXT_PARAMETER],
        responses={200: SkipOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, public_id: str, position: int):
        mode = _next_mode(request)
        skipped = item_skip(
            annotator=request.user, assignment_public_id=public_id, position=position
        )
        data = {"position": position, "skipped": skipped}
        if mode is not None:
            data["next"] = _next_item(request, public_id, position, mode)
        return Response(data)


class RatingSaveApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(
        request=RatingInputSerializer,
        responses={200: SavedOutputSerializer, **error_responses(400, 404, 409)},
    )
    def put(self, request, public_id: str, position: int):
        serializer = RatingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rating = rating_save(
            annotator=request.user,
            assignment_public_id=public_id,
            position=position,
            **serializer.validated_data,
        )
        return Response(
            saved_output(
                position=position,
                revision=rating.revision,
                elapsed_ms=rating.elapsed_ms,
                done=assignment_done_count(assignment_id=rating.assignment_id),
            )
        )


class MyEndProbeApi(APIView):
    """The blinding question asked once per assignment, after its last item."""

    permission_classes = [IsClinician]

    def _probe(self, request, public_id: str):
        probe = end_probe_get(annotator=request.user, assignment_public_id=public_id)
        if probe is None:
            raise NotFoundError("This audit asks no end-of-assignment question.", code="no_probe")
        return probe

    @extend_schema(responses={200: EndProbeOutputSerializer, **error_responses(404)})
    def get(self, request, public_id: str):
        return Response(EndProbeOutputSerializer(self._probe(request, public_id)).data)

    @extend_schema(
        request=EndProbeInputSerializer,
        responses={200: EndProbeOutputSerializer, **error_responses(400, 404, 409)},
    )
    def put(self, request, public_id: str):
        serializer = EndProbeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        answers = {a["position"]: a["guess"] for a in serializer.validated_data["answers"]}
        if len(answers) != len(serializer.validated_data["answers"]):
            raise ApplicationError("An item is answered twice.", code="probe_position")
        end_probe_save(annotator=request.user, assignment_public_id=public_id, answers=answers)
        return Response(EndProbeOutputSerializer(self._probe(request, public_id)).data)


class AssignmentSubmitApi(APIView):
    permission_classes = [IsClinician]

    @extend_schema(
        request=None,
        responses={200: AssignmentSummaryOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request, public_id: str):
        assignment_submit(annotator=request.user, assignment_public_id=public_id)
        summary = assignment_get_for_clinician(
            clinician=request.user, assignment_public_id=public_id
        )
        return Response(AssignmentSummaryOutputSerializer(summary).data)


# --- admins: batches, assignment, progress --------------------------------------------------
def _plan_data(plan) -> dict:
    return BatchPlanOutputSerializer(
        {
            "unit": plan.unit,
            "mode": plan.mode,
            "segmentation": plan.segmentation,
            "seed": plan.seed,
            "allocation": plan.allocation,
            "stratify_by": ["condition", *plan.stratify_by],
            "population": plan.population,
            "excluded": plan.excluded,
            "sample_size": plan.sample_size,
            "sampling": dict(plan.sampling),
            "gold": plan.gold,
            "gold_available": plan.gold_available,
            "strata": plan.strata,
        }
    ).data


class BatchPreviewApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        request=BatchPlanInputSerializer,
        responses={200: BatchPlanOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        serializer = BatchPlanInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        plan = batch_preview(audit=audit, **serializer.validated_data)
        return Response(_plan_data(plan))


class BatchCreateApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        request=BatchCreateInputSerializer,
        responses={201: BatchOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        serializer = BatchCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = batch_build(audit=audit, created_by=request.user, **serializer.validated_data)
        return Response(BatchOutputSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchAssignApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        request=BatchAssignInputSerializer,
        responses={
            201: AssignmentProgressOutputSerializer(many=True),
            **error_responses(400, 404, 409),
        },
    )
    def post(self, request, batch_id: int):
        batch = get_object_or_404(Batch.objects.select_related("audit"), pk=batch_id)
        serializer = BatchAssignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        annotators = annotators_get_by_usernames(usernames=serializer.validated_data["annotators"])
        batch_assign(
            batch=batch,
            annotators=annotators,
            due_date=serializer.validated_data["due_date"],
            confirm_leak=serializer.validated_data["confirm_leak"],
            confirmed_by=request.user,
        )
        rows = assignment_progress_list(batch=batch)
        return Response(
            AssignmentProgressOutputSerializer(rows, many=True).data,
            status=status.HTTP_201_CREATED,
        )


class BatchPlannerApi(APIView):
    """GET (admins): expert labels per arm each design needs for a target half-width on the
    gap between the two arms the judge puts closest, from the labels so far."""

    permission_classes = [IsAdmin]

    @extend_schema(
        parameters=[PlannerInputSerializer],
        responses={200: PlannerOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request, batch_id: int):
        batch = get_object_or_404(Batch.objects.select_related("audit"), pk=batch_id)
        serializer = PlannerInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        planner = batch_planner(batch=batch, **serializer.validated_data)
        return Response(PlannerOutputSerializer(planner).data)


class BatchWaveReleaseApi(APIView):
    """POST (admins): release the batch's next wave to its annotators."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=None, responses={200: WaveReleaseOutputSerializer, **error_responses(404, 409)}
    )
    def post(self, request, batch_id: int):
        batch = get_object_or_404(Batch.objects.select_related("audit"), pk=batch_id)
        release = batch_wave_release(batch=batch, by=request.user)
        return Response(WaveReleaseOutputSerializer(release).data)


class BatchLeakCheckApi(APIView):
    """The leak gate's figures on what the batch's annotators will see (before assigning)."""

    permission_classes = [IsAdmin]

    @extend_schema(responses={200: LeakCheckOutputSerializer, **error_responses(404)})
    def get(self, request, batch_id: int):
        batch = get_object_or_404(Batch.objects.select_related("audit"), pk=batch_id)
        return Response(LeakCheckOutputSerializer(batch_leak_check(batch=batch).as_dict()).data)


class BatchProgressApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        responses={200: AssignmentProgressOutputSerializer(many=True), **error_responses(404)}
    )
    def get(self, request, batch_id: int):
        batch = get_object_or_404(Batch, pk=batch_id)
        rows = assignment_progress_list(batch=batch)
        return Response(AssignmentProgressOutputSerializer(rows, many=True).data)


class AuditProgressApi(APIView):
    permission_classes = [IsResearcherOrAdmin]

    @extend_schema(responses={200: AuditProgressOutputSerializer, **error_responses(404)})
    def get(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        progress = audit_progress(audit=audit)
        return Response(
            {
                "total": progress.total,
                "done": progress.done,
                "abstention_share": progress.abstention_share,
                "elapsed_ms": progress.elapsed_ms,
                "assignments": AssignmentProgressOutputSerializer(
                    progress.assignments, many=True
                ).data,
            }
        )


class AssignmentReassignApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        request=ReassignInputSerializer,
        responses={
            201: AssignmentProgressOutputSerializer(many=True),
            **error_responses(400, 404, 409),
        },
    )
    def post(self, request, public_id: str):
        assignment = get_object_or_404(Assignment, public_id=public_id)
        serializer = ReassignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        (to_annotator,) = annotators_get_by_usernames(
            usernames=[serializer.validated_data["annotator"]]
        )
        new = assignment_reassign(
            assignment=assignment,
            to_annotator=to_annotator,
            due_date=serializer.validated_data["due_date"],
        )
        rows = [
            r
            for r in assignment_progress_list(batch=new.batch)
            if r.public_id in (assignment.public_id, new.public_id)
        ]
        return Response(
            AssignmentProgressOutputSerializer(rows, many=True).data,
            status=status.HTTP_201_CREATED,
        )


class AssignmentReopenApi(APIView):
    """POST (admins): reopen a submitted assignment so its annotator can change labels and
    submit again; logged as an event (answered)."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=ReopenInputSerializer,
        responses={200: AssignmentEventOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, public_id: str):
        assignment = get_object_or_404(Assignment, public_id=public_id)
        serializer = ReopenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = assignment_reopen(
            assignment=assignment, by=request.user, note=serializer.validated_data["note"]
        )
        return Response(AssignmentEventOutputSerializer(event).data)
