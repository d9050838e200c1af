from django.db import migrations, models

BATCH = 2000


def fill_from_samples(apps, schema_editor):
    """Verdicts stored before the column: the share of their samples saying "error"."""
    verdict_model = apps.get_model("judges", "JudgeVerdict")
    rows = (
        verdict_model.objects.filter(prompt_record__has_key="sample_verdicts")
        .only("pk", "prompt_record")
        .order_by("pk")
    )
    pending = []
    for row in rows.iterator(chunk_size=BATCH):
        votes = [v for v in row.prompt_record.get("sample_verdicts") or [] if v in ("correct", "error")]
        if len(votes) > 1:
            row.error_probability = sum(v == "error" for v in votes) / len(votes)
            pending.append(row)
        if len(pending) >= BATCH:
            verdict_model.objects.bulk_update(pending, ["error_probability"])
            pending = []
    verdict_model.objects.bulk_update(pending, ["error_probability"])


class Migration(migrations.Migration):
    dependencies = [
        ("judges", "0006_label_mode"),
    ]

    operations = [
        migrations.AddField(
            model_name="judgeverdict",
            name="error_probability",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.RunPython(fill_from_samples, migrations.RunPython.noop, elidable=True),
    ]
