import json
from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError

from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError
from judges.services import judge_create_or_update

from ._common import command_error


class Command(JsonOutputMixin, BaseCommand):
    help = (
        "Create or update a judge (and its prompt version) from a JSON or YAML spec. "
        "See docs/judges.md; example: docs/examples/judge.json."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--label-mode",
            choices=["steps", "first_error"],
            default=None,
            help="the judge's default label mode (overrides the spec's label_mode)",
        )
        self.add_json_argument(parser)

    def handle(self, *args, file: Path, **options):
        self.json_setup(options)
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        text = file.read_text(encoding="utf-8")
        try:
            if file.suffix.lower() in (".yaml", ".yml"):
                spec = yaml.safe_load(text)
            else:
                spec = json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            kind = "YAML" if file.suffix.lower() in (".yaml", ".yml") else "JSON"
            raise CommandError(f"{file}: not valid {kind}: {exc}") from None
        if options.get("label_mode"):
            if not isinstance(spec, dict):
                raise CommandError(f"{file}: the spec must be an object")
            spec = {**spec, "label_mode": options["label_mode"]}
        try:
            # An admin at the shell: the one place a reference judge may be made from a spec.
            judge = judge_create_or_update(spec=spec, allow_reference=True)
        except ApplicationError as exc:
            raise command_error(exc) from None
        prompt = f" with prompt {judge.prompt}" if judge.prompt else ""
        self.finish(
            {
                "judge_id": judge.pk,
                "judge": judge.name,
                "prompt_id": judge.prompt_id,
            },
            f"judge {judge.label} saved{prompt}",
        )
