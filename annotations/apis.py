from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.models import Audit
from annotations.permissions import IsAdmin, IsResearcherOrAdmin
from annotations.serializers import AuditOutputSerializer, ImportCreateInputSerializer
from annotations.services.import_jobs import (
    import_job_create,
    import_job_get,
    import_job_progress,
)


class AuditListApi(APIView):
    permission_classes = [IsResearcherOrAdmin]

    def get(self, request):
        audits = Audit.objects.all()
        return Response(AuditOutputSerializer(audits, many=True).data)


class ImportCreateApi(APIView):
    """POST a JSONL or CSV file: 400 with every problem, or 202 with a job to poll."""

    permission_classes = [IsAdmin]
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request, slug: str):
        audit = get_object_or_404(Audit, slug=slug)
        data = request.data.copy()
        if "segmenter" in data:
            names = [n.strip() for v in data.getlist("segmenter") for n in v.split(",")]
            data.setlist("segmenter", [n for n in names if n])
        serializer = ImportCreateInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        job = import_job_create(
            audit=audit,
            user=request.user,
            filename=upload.name,
            chunks=upload.chunks(),
            segmenter_names=serializer.validated_data["segmenter"],
            skip_existing=serializer.validated_data["skip_existing"],
        )
        return Response(import_job_progress(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    permission_classes = [IsAdmin]

    def get(self, request, job_id: int):
        return Response(import_job_progress(import_job_get(job_id=job_id)))
