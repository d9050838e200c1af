"""StepAudit project package: settings, Celery app, URLs, errors, statistics and reports.

Deliberately empty of imports: ``auditapp.agreement`` must import without Django or Celery.
The Celery app is loaded when Django starts (``annotations.apps.AnnotationsConfig.ready``)
and by ``celery -A auditapp``, which finds ``auditapp.celery``.
"""
