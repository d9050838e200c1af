"""REST API of the report layer: thin views over the services (researchers and admins only)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.permissions import IsAdmin, IsResearcherOrAdmin
from auditapp.exceptions import ApplicationError, NotFoundError
from auditapp.openapi import error_responses
from reports.collect import (
    answers_collect,
    expert_labels_collect,
    labels_collect,
    pseudonyms_collect,
    ratings_collect,
    revisions_collect,
    steps_collect,
)
from reports.exports import REPORT_TABLES, frame_to_bytes, report_tables
from reports.selectors import audit_get_for_report
from reports.services import (
    agreement_stats_from_csv,
    analysis_plan_get,
    analysis_plan_lock,
    audit_unblind,
    report_cached,
)

# "pseudonyms" (pseudonym → imported id) answers 409 still_blinded until the audit is unblinded.
LONG_TABLES = (
    "labels",
    "answers",
    "ratings",
    "pseudonyms",
    "expert_labels",
    "revisions",
    "steps",
)
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
# An uploaded agreement table is read whole into memory; 50 MB is ~1,000,000 short rows.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class AnyMediaRenderer(BaseRenderer):
    """Lets a download view answer clients that ask for text/csv or Parquet (the view returns
    an HttpResponse itself, which no renderer touches)."""

    media_type = "*/*"
    format = "download"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only errors get here (a client that asked for text/csv, or ?format=download): they are
        # the JSON error body, labelled as JSON, whatever was asked for.
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return JSONRenderer().render(data, renderer_context=renderer_context)


class ReportSettingsSerializer(serializers.Serializer):
    seed = serializers.IntegerField(min_value=0, required=False)
    resamples = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    ece_bins = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    abstain_rule = serializers.ChoiceField(choices=["exclude", "error", "correct"], required=False)
    confidence_level = serializers.FloatField(min_value=0.5, max_value=0.999, required=False)


class ReportAuditOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    sources = serializers.JSONField()
    n_labels_used = serializers.IntegerField()


class ReportOutputSerializer(serializers.Serializer):
    """The report's head; the statistics sections (error_rates, orderings, agreement, ...)
    follow as further keys, described in docs/report.md."""

    audit = ReportAuditOutputSerializer()
    generated_at = serializers.DateTimeField()
    parameters = serializers.DictField()
    blinding = serializers.DictField()
    analysis_plan = serializers.DictField()


class TableIndexOutputSerializer(serializers.Serializer):
    long_tables = serializers.DictField(child=serializers.URLField())
    report_tables = serializers.DictField(child=serializers.URLField())
    formats = serializers.ListField(child=serializers.CharField())
    audit = serializers.CharField()


class AgreementStatsOutputSerializer(serializers.Serializer):
    """:func:`auditapp.agreement.coefficients.agreement_summary` and the columns used;
    undefined coefficients are null."""

    percent_agreement = serializers.FloatField(allow_null=True)
    cohen_kappa = serializers.FloatField(allow_null=True)
    cohen_kappa_ci_low = serializers.FloatField(allow_null=True)
    cohen_kappa_ci_high = serializers.FloatField(allow_null=True)
    fleiss_kappa = serializers.FloatField(allow_null=True)
    krippendorff_alpha = serializers.FloatField(allow_null=True)
    gwet_ac1 = serializers.FloatField(allow_null=True)
    level = serializers.CharField()
    n_units = serializers.IntegerField()
    n_pairable_units = serializers.IntegerField()
    n_raters = serializers.IntegerField()
    n_ratings = serializers.IntegerField()
    unit = serializers.CharField()
    rater = serializers.CharField()
    value = serializers.CharField()


class UnblindOutputSerializer(serializers.Serializer):
    audit = serializers.CharField()
    unblinded_at = serializers.DateTimeField()
    unblinded_by = serializers.CharField()
    plan_sha256 = serializers.CharField(allow_null=True)


def _settings(request) -> dict:
    serializer = ReportSettingsSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class AuditReportApi(APIView):
    """GET the whole report as JSON; ?seed=&resamples=&ece_bins=&abstain_rule=."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(
        parameters=[ReportSettingsSerializer],
        responses={200: ReportOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request, slug: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        return Response(report_cached(audit=audit, **_settings(request)))


class AuditTableApi(APIView):
    """GET one table as CSV or Parquet: a long table (labels, answers, ratings) or a report
    table (error_rates, …) computed with the same query parameters as the report."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    renderer_classes = [JSONRenderer, AnyMediaRenderer]

    @extend_schema(
        parameters=[
            ReportSettingsSerializer,
            OpenApiParameter(
                "name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=[*LONG_TABLES, *REPORT_TABLES]
            ),
            OpenApiParameter(
                "fmt", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(CONTENT_TYPES)
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The table as CSV."),
            (200, CONTENT_TYPES["parquet"]): OpenApiResponse(
                OpenApiTypes.BINARY, description="The table as Parquet."
            ),
            **error_responses(400, 404, 409),
        },
    )
    def get(self, request, slug: str, name: str, fmt: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        if fmt not in CONTENT_TYPES:
            raise NotFoundError(f"no format {fmt!r}; use csv or parquet")
        if name == "labels":
            frame, _ = labels_collect(audit)
        elif name == "answers":
            frame = answers_collect(audit)
        elif name == "ratings":
            frame = ratings_collect(audit)
        elif name == "pseudonyms":
            frame = pseudonyms_collect(audit)
        elif name == "expert_labels":
            frame = expert_labels_collect(audit)
        elif name == "revisions":
            frame = revisions_collect(audit)
        elif name == "steps":
            frame = steps_collect(audit)
        elif name in REPORT_TABLES:
            frame = report_tables(report_cached(audit=audit, **_settings(request)))[name]
        else:
            raise NotFoundError(
                f"no table {name!r}",
                extra={"tables": [*LONG_TABLES, *REPORT_TABLES]},
            )
        response = HttpResponse(frame_to_bytes(frame, fmt), content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{audit.slug}-{name}.{fmt}"'
        response["Cache-Control"] = "private, no-store"
        return response


class AuditTableIndexApi(APIView):
    """GET the download URLs of every table of an audit."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]

    @extend_schema(responses={200: TableIndexOutputSerializer, **error_responses(404)})
    def get(self, request, slug: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        base = request.build_absolute_uri()
        return Response(
            {
                "long_tables": {n: f"{base}{n}.csv" for n in LONG_TABLES},
                "report_tables": {n: f"{base}{n}.csv" for n in REPORT_TABLES},
                "formats": list(CONTENT_TYPES),
                "audit": audit.slug,
            }
        )


class AgreementStatsApi(APIView):
    """POST a CSV (multipart ``file``) with ``unit``, ``rater``, ``value`` [, ``level``]."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AgreementStatsInput"

        file = serializers.FileField()
        unit = serializers.CharField(max_length=200)
        rater = serializers.CharField(max_length=200)
        value = serializers.CharField(max_length=200)
        level = serializers.ChoiceField(
            choices=["nominal", "ordinal", "interval", "ratio"], default="nominal"
        )

    @extend_schema(
        request=InputSerializer,
        responses={200: AgreementStatsOutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ApplicationError(
                f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB",
                code="too_large",
            )
        result = agreement_stats_from_csv(
            upload,
            unit=data["unit"],
            rater=data["rater"],
            value=data["value"],
            level=data["level"],
            name=upload.name or "the upload",
        )
        return Response(result)


class PlanOutputSerializer(serializers.Serializer):
    locked = serializers.BooleanField()
    sha256 = serializers.CharField(required=False)
    locked_at = serializers.DateTimeField(required=False)
    locked_by = serializers.CharField(required=False)
    plan = serializers.JSONField(required=False)


def _plan_payload(plan) -> dict:
    if plan is None:
        return {"locked": False}
    return PlanOutputSerializer(
        {
            "locked": True,
            "sha256": plan.sha256,
            "locked_at": plan.locked_at,
            "locked_by": plan.locked_by.get_username(),
            "plan": plan.plan,
        }
    ).data


class AnalysisPlanApi(APIView):
    """GET the audit's analysis plan; POST ``{"plan": {...}}`` to lock it (once, blinded)."""

    permission_classes = [IsAuthenticated, IsResearcherOrAdmin]
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PlanLockInput"

        plan = serializers.DictField()

    @extend_schema(responses={200: PlanOutputSerializer, **error_responses(404)})
    def get(self, request, slug: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        return Response(_plan_payload(analysis_plan_get(audit=audit)))

    @extend_schema(
        request=InputSerializer,
        responses={201: PlanOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, slug: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        plan = analysis_plan_lock(
            audit=audit, user=request.user, plan=serializer.validated_data["plan"]
        )
        return Response(_plan_payload(plan), status=201)


class AuditUnblindApi(APIView):
    """POST ``{"confirm": "<slug>"}``: reveal condition names. Admins only; once."""

    permission_classes = [IsAuthenticated, IsAdmin]
    parser_classes = [JSONParser, FormParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "UnblindInput"

        confirm = serializers.CharField(max_length=64, allow_blank=True)

    @extend_schema(
        request=InputSerializer,
        responses={200: UnblindOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, slug: str):
        audit = audit_get_for_report(user=request.user, slug=slug)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = audit_unblind(
            audit=audit,
            user=request.user,
            confirm_slug=serializer.validated_data["confirm"],
            ip_address=request.META.get("REMOTE_ADDR"),
        )
        return Response(
            {
                "audit": audit.slug,
                "unblinded_at": event.at.isoformat(),
                "unblinded_by": request.user.get_username(),
                "plan_sha256": event.plan_sha256 or None,
            }
        )
