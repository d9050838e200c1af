"""norm-v2 (issue 11): the audit's normaliser version and rules, and a blinded final answer.

Audits that exist already were imported with norm-v1 and keep it; new audits default to norm-v2.
Their final answers were shown as imported, so the blinded final answer starts as a copy.
"""

from django.db import migrations, models
from django.db.models import F

import annotations.models.audits


def copy_final_answers(apps, schema_editor):
    Trace = apps.get_model("annotations", "Trace")
    Trace.objects.update(blinded_final_answer=F("final_answer"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0002_batches_labels"),
    ]

    operations = [
        migrations.AddField(
            model_name="audit",
            name="normaliser_rules",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text=(
                    "Regex → replacement, applied in order after the normaliser; checked on save."
                ),
                validators=[annotations.models.audits.validate_normaliser_rules],
            ),
        ),
        # Existing rows get norm-v1 (what blinded them); the default then becomes norm-v2.
        migrations.AddField(
            model_name="audit",
            name="normaliser_version",
            field=models.CharField(
                choices=[("norm-v1", "norm-v1"), ("norm-v2", "norm-v2")],
                default="norm-v1",
                help_text="docs/formats.md, 'Blinded text'.",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="audit",
            name="normaliser_version",
            field=models.CharField(
                choices=[("norm-v1", "norm-v1"), ("norm-v2", "norm-v2")],
                default="norm-v2",
                help_text="docs/formats.md, 'Blinded text'.",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="trace",
            name="blinded_final_answer",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(copy_final_answers, migrations.RunPython.noop, elidable=True),
    ]
