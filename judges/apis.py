"""The judges' JSON API (researchers and admins): judges, runs, progress, pause/resume/cancel.

Specs are validated by the service (``JudgeSpecError`` names the field → 400); each write is
one view calling one service.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.models import Audit
from annotations.permissions import IsResearcherOrAdmin
from auditapp.exceptions import NotFoundError
from auditapp.openapi import error_responses
from judges.models import JudgeRun
from judges.permissions import IsJudgeEditor
from judges.selectors import judge_list, run_condition_summary, run_get, run_list, run_progress
from judges.serializers import (
    JudgeOutputSerializer,
    RunCreateInputSerializer,
    RunDetailOutputSerializer,
    RunListQuerySerializer,
    RunProgressOutputSerializer,
)
from judges.services import (
    judge_create_or_update,
    judge_get,
    reference_run_create,
    run_cancel,
    run_create,
    run_pause,
    run_resume,
)
from judges.services.probe import judge_check


class JudgeListCreateApi(APIView):
    """GET lists judge versions; POST saves a spec (a judge with runs gets a new version)."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsJudgeEditor()]
        return [IsResearcherOrAdmin()]

    def get(self, request):
        return Response(JudgeOutputSerializer(judge_list(), many=True).data)

    def post(self, request):
        judge = judge_create_or_update(spec=request.data)
        return Response(JudgeOutputSerializer(judge).data, status=status.HTTP_201_CREATED)


class JudgeCheckApi(APIView):
    """POST probes the judge's server: models, structured-output modes, n, usage, one request
    at a time, latency, and suggested settings (``manage.py judge_check``, docs/judges.md)."""

    permission_classes = [IsResearcherOrAdmin]

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, **error_responses(400, 404)})
    def post(self, request, name: str):
        return Response(judge_check(judge=judge_get(name=name)))


def _run_or_404(run_id: int) -> JudgeRun:
    run = run_get(run_id=run_id)
    if run is None:
        raise NotFoundError(f"no judge run {run_id}")
    return run


class RunListCreateApi(APIView):
    """GET ?audit=SLUG lists runs with their progress; POST starts one."""

    permission_classes = [IsResearcherOrAdmin]

    @extend_schema(
        parameters=[RunListQuerySerializer],
        responses={200: RunProgressOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request):
        query = RunListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        audit = None
        if query.validated_data.get("audit"):
            audit = get_object_or_404(Audit, slug=query.validated_data["audit"])
        runs = run_list(audit=audit)[:200]
        return Response([run_progress(r) for r in runs])

    @extend_schema(
        request=RunCreateInputSerializer,
        responses={201: RunProgressOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request):
        data = RunCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        audit = get_object_or_404(Audit, slug=v["audit"])
        judge = judge_get(name=v["judge"])
        if judge.is_reference:
            run = reference_run_create(
                audit=audit, segmentation=v["segmentation"], user=request.user
            )
        else:
            run = run_create(
                audit=audit,
                judge=judge,
                segmentation=v["segmentation"],
                batch_name=v["batch"],
                user=request.user,
                label_mode=v.get("label_mode"),
            )
        return Response(run_progress(_run_or_404(run.pk)), status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    permission_classes = [IsResearcherOrAdmin]

    @extend_schema(responses={200: RunDetailOutputSerializer, **error_responses(404)})
    def get(self, request, run_id: int):
        run = _run_or_404(run_id)
        return Response(
            {
                **run_progress(run),
                "conditions": run_condition_summary(run),
                "judge_settings": run.judge_settings,
            }
        )


_ACTIONS = {"pause": run_pause, "resume": run_resume, "cancel": run_cancel}


class RunActionApi(APIView):
    permission_classes = [IsResearcherOrAdmin]

    @extend_schema(
        operation_id="judges_runs_action",
        request=None,
        parameters=[
            OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(_ACTIONS))
        ],
        responses={200: RunProgressOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request, run_id: int, action: str):
        service = _ACTIONS.get(action)
        if service is None:
            raise NotFoundError(f"no action {action!r}; use pause, resume or cancel")
        service(run=_run_or_404(run_id))
        return Response(run_progress(_run_or_404(run_id)))
