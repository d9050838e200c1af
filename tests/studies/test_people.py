"""Accounts in bulk: add_users and the admin page, one-time sign-in links."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotations.roles import Role, user_has_role
from studies.models import SignInLink

pytestmark = pytest.mark.django_db

GOOD_CSV = """username,role,email,display_name
ana,clinician,ana@example.org,Ana Lopez
ben,participant,,
cleo,researcher,cleo@example.org,
dan,admin,,Dan Admin
"""


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_add_users_creates_everyone_and_writes_single_use_links(tmp_path, client):
    # given
    source = tmp_path / "people.csv"
    source.write_text(GOOD_CSV)
    # when
    printed = _run("add_users", str(source), "--json", "--base-url", "https://audit.example")
    # then the ids are printed as JSON, with no password and no link token
    result = json.loads(printed)
    users = get_user_model().objects.in_bulk([u["id"] for u in result["users"]])
    assert [u["username"] for u in result["users"]] == ["ana", "ben", "cleo", "dan"]
    assert "password" not in printed and "sign-in/" not in printed
    # the roles are set, and nobody can sign in before choosing a password
    by_name = {u.username: u for u in users.values()}
    assert user_has_role(by_name["ben"], Role.PARTICIPANT)
    assert user_has_role(by_name["ana"], Role.CLINICIAN)
    assert by_name["dan"].is_staff and by_name["ana"].email == "ana@example.org"
    assert by_name["ana"].first_name == "Ana" and by_name["ana"].last_name == "Lopez"
    assert not any(u.has_usable_password() for u in users.values())
    # the links file (owner-only) holds one link each
    links = list(csv.DictReader(_lines(result["links_file"])))
    assert (tmp_path / "people-links.csv").stat().st_mode & 0o077 == 0
    assert [r["username"] for r in links] == ["ana", "ben", "cleo", "dan"]
    assert all(r["sign_in_url"].startswith("https://audit.example/sign-in/") for r in links)
    # when ben opens his link and sets a password
    path = links[1]["sign_in_url"].removeprefix("https://audit.example")
    assert client.get(path).status_code == 200
    done = client.post(
        path, {"password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"}
    )
    # then he is signed in, can sign in again with it, and the link is spent
    assert done.status_code == 302
    ben = get_user_model().objects.get(username="ben")
    assert ben.check_password("a-long-pass-phrase-9")
    again = type(client)().get(path)
    assert again.status_code == 410 and "expired or was already used" in again.content.decode()
    assert SignInLink.objects.get(user=ben).used_at is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "username,role\nana,clinician\nana,participant\n",
            "line 3: username 'ana' repeats line 2",
        ),
        ("username,role\nana,nurse\n", "line 2: role must be one of"),
        ("username,role\nan a,clinician\n", "line 2: username"),
        ("username,role,email\nana,clinician,not-an-address\n", "line 2: email"),
        ("username,role,extra\nana,clinician,x\n", "line 1: unknown column(s): extra"),
        ("name,role\nana,clinician\n", "line 1: missing column(s): username"),
        ("username,role\nana,clinician,surplus\n", "line 2: more cells than columns"),
        ("username,role\nadmin1,clinician\n", "line 2: username 'admin1' already exists"),
    ],
    ids=[
        "duplicate",
        "role",
        "username",
        "email",
        "unknown-column",
        "missing-column",
        "surplus-cell",
        "exists",
    ],
)
def test_a_bad_row_rejects_the_file_by_line_and_creates_nobody(tmp_path, admin_user, text, problem):
    source = tmp_path / "people.csv"
    source.write_text(text)
    users = get_user_model().objects.count()
    with pytest.raises(CommandError) as error:
        _run("add_users", str(source))
    assert problem in str(error.value)
    assert "Nobody was created" in str(error.value) or "line 1" in problem
    assert get_user_model().objects.count() == users
    assert SignInLink.objects.count() == 0
    assert not (tmp_path / "people-links.csv").exists()


def test_a_good_row_beside_a_bad_one_is_not_created_either(tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("username,role\nfine,clinician\nbad one,clinician\n")
    with pytest.raises(CommandError):
        _run("add_users", str(source))
    assert not get_user_model().objects.filter(username="fine").exists()


def test_an_expired_or_tampered_sign_in_link_is_refused(tmp_path, client):
    source = tmp_path / "people.csv"
    source.write_text("username,role\nlate,clinician\n")
    result = json.loads(_run("add_users", str(source), "--json", "--valid-hours", "1"))
    url = next(csv.DictReader(_lines(result["links_file"])))["sign_in_url"]
    path = url.removeprefix("http://localhost:8000")
    token = path.split("/")[2]
    tampered = path.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert client.get(tampered).status_code == 410
    assert client.get("/sign-in/%00%00/").status_code in (404, 410)
    SignInLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = client.post(
        path, {"password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"}
    )
    assert page.status_code == 410
    assert not get_user_model().objects.get(username="late").has_usable_password()


def test_a_weak_or_mismatched_password_keeps_the_link(tmp_path, client):
    source = tmp_path / "people.csv"
    source.write_text("username,role\nweak,participant\n")
    result = json.loads(_run("add_users", str(source), "--json"))
    path = next(csv.DictReader(_lines(result["links_file"])))["sign_in_url"].removeprefix(
        "http://localhost:8000"
    )
    assert (
        client.post(path, {"password1": "a-long-pass-phrase-9", "password2": "other"}).status_code
        == 400
    )
    assert SignInLink.objects.get().used_at is None


def test_the_admin_page_answers_the_links_csv_and_refuses_bad_files(client, admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(admin_user)
    assert client.get("/people/new/").status_code == 200
    bad = client.post(
        "/people/new/",
        {
            "file": SimpleUploadedFile("p.csv", b"username,role\nx,clinician\nx,clinician\n"),
            "valid_hours": 24,
        },
    )
    assert bad.status_code == 400 and "line 3" in bad.content.decode()
    assert not get_user_model().objects.filter(username="x").exists()
    good = client.post(
        "/people/new/",
        {"file": SimpleUploadedFile("p.csv", GOOD_CSV.encode()), "valid_hours": 24},
    )
    assert good.status_code == 200 and good["Content-Type"].startswith("text/csv")
    assert "no-store" in good["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(good.content.decode())))
    assert len(rows) == 4 and rows[0]["sign_in_url"].startswith("http://testserver/sign-in/")
