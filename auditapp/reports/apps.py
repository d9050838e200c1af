from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "auditapp.reports"
    label = "reports"
    verbose_name = "Agreement reports"
