import os

from django.core.management.base import BaseCommand, CommandError

from annotations.roles import Role
from annotations.services.users import password_generate, user_create_or_update


class Command(BaseCommand):
    help = "Create (or reset) an account with one role; prints the password it set."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument(
            "--password-env", metavar="VAR", help="take the password from this environment variable"
        )

    def handle(self, *args, username, role, password_env, **options):
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"environment variable {password_env} is empty or unset")
        else:
            password = password_generate()
        user_create_or_update(username=username, role=Role(role), password=password)
        if password_env:
            self.stdout.write(f"{username} ({role}): password from ${password_env}")
        else:
            self.stdout.write(f"{username} ({role}): password {password}")
