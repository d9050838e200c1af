"""``--json`` for the commands that create something: one JSON object of the ids made.

With ``--json`` the object is the only thing on stdout (a script reads it with ``jq`` or
``json.loads``); the prose a person reads goes to stderr instead.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand


class JsonOutputMixin:
    """Adds ``--json``; ``say()`` for prose, ``finish()`` for the result."""

    def add_json_argument(self: BaseCommand, parser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="print only a JSON object with the ids made (prose goes to stderr)",
        )

    def json_setup(self: BaseCommand, options: dict) -> None:
        self._as_json = bool(options.get("as_json"))

    def say(self: BaseCommand, text: str, style=None) -> None:
        if getattr(self, "_as_json", False):
            self.stderr.write(text)
        else:
            self.stdout.write(style(text) if style else text)

    def finish(self: BaseCommand, payload: dict[str, Any], prose: str, style=None) -> None:
        if getattr(self, "_as_json", False):
            self.stderr.write(prose)
            self.stdout.write(json.dumps(payload, sort_keys=True))
        else:
            self.stdout.write(style(prose) if style else prose)
