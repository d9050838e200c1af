import os

from django.core.management.base import BaseCommand, CommandError

from annotations.roles import Role
from annotations.services.users import password_generate, user_create_or_update
from auditapp.commands import JsonOutputMixin


class Command(JsonOutputMixin, BaseCommand):
    help = "Create (or reset) an account with one role; prints the password it set."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument(
            "--password-env", metavar="VAR", help="take the password from this environment variable"
        )
        self.add_json_argument(parser)

    def handle(self, *args, username, role, password_env, **options):
        self.json_setup(options)
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"environment variable {password_env} is empty or unset")
        else:
            password = password_generate()
        user = user_create_or_update(username=username, role=Role(role), password=password)
        payload = {"user_id": user.pk, "username": username, "role": role}
        if password_env:
            self.finish(payload, f"{username} ({role}): password from ${password_env}")
        else:
            # Generated here and shown once: the JSON carries it as the prose does.
            self.finish(
                {**payload, "password": password}, f"{username} ({role}): password {password}"
            )
