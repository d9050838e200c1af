from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Batch
from annotations.services.batches import batch_wave_release
from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError


class Command(JsonOutputMixin, BaseCommand):
    help = "Release the next wave of a batch to its annotators (docs/sampling.md)."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, required=True, help="batch id")
        parser.add_argument(
            "--by",
            default="",
            help="who releases it (submitted assignments are reopened in this name); "
            "default: the batch's creator",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **opts):
        self.json_setup(opts)
        batch = Batch.objects.filter(pk=opts["batch"]).select_related("created_by").first()
        if batch is None:
            raise CommandError(f"No batch {opts['batch']}.")
        by = batch.created_by
        if opts["by"]:
            by = get_user_model().objects.filter(username=opts["by"]).first()
            if by is None:
                raise CommandError(f"No user {opts['by']!r}.")
        try:
            release = batch_wave_release(batch=batch, by=by)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for public_id, added in release.items_added.items():
            self.say(f"assignment {public_id}: {added} items added")
        if release.reopened:
            self.say(f"reopened: {', '.join(release.reopened)}")
        self.finish(
            {
                "batch_id": batch.pk,
                "wave": release.wave,
                "waves": release.waves,
                "items_added": release.items_added,
                "reopened": release.reopened,
            },
            f"wave {release.wave} of {release.waves} released",
            self.style.SUCCESS,
        )
