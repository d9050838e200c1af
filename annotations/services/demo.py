"""The demo audit and accounts that the README's start command sets up."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from annotations.models import Audit
from annotations.roles import Role
from annotations.services.audits import audit_create
from annotations.services.batches import batch_assign, batch_build
from annotations.services.imports import import_file
from annotations.services.users import password_generate, user_create_or_update

DEMO_SLUG = "demo"
DEMO_BATCH = "demo batch 1"
DEMO_ACCOUNTS = (
    ("admin", Role.ADMIN),
    ("researcher", Role.RESEARCHER),
    ("clinician1", Role.CLINICIAN),
    ("clinician2", Role.CLINICIAN),
)
DEMO_TRACES = Path(settings.BASE_DIR) / "docs" / "examples" / "traces.jsonl"
DEMO_GUIDELINES = """\
# How to label a step

Judge **only the step shown**, given the question and the steps before it.

- **Correct**: the step's own claim is true and follows from what came before.
- **Error**: the step states something false, miscalculates, or draws a conclusion that does
  not follow. Pick the category that fits best.
- **Abstain**: you cannot tell (the step is too vague, or outside your expertise).

You do not see which model wrote the step, and you should not try to guess.
"""


def _read_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)
    return {name: password for name, password in pairs}


@transaction.atomic
def demo_seed(*, credentials_file: Path) -> list[tuple[str, str, str]]:
    """Create what is missing of the demo; never reset what exists. Returns the accounts."""
    known = _read_credentials(credentials_file)
    users = get_user_model().objects
    accounts = []
    for username, role in DEMO_ACCOUNTS:
        password = known.get(username)
        if password is None or not users.filter(username=username).exists():
            password = password_generate()
            user_create_or_update(username=username, role=role, password=password)
        accounts.append((username, password, role.value))
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text("".join(f"{u}\t{p}\n" for u, p, _ in accounts))
    credentials_file.chmod(0o600)

    audit = Audit.objects.filter(slug=DEMO_SLUG).first()
    if audit is None:
        audit = audit_create(
            slug=DEMO_SLUG,
            name="Demo: distillation audit (MedQA-style)",
            guidelines=DEMO_GUIDELINES,
            likert_items=[
                {
                    "key": "interpretability",
                    "label": "How easy is this reasoning to follow?",
                    "min": 1,
                    "max": 5,
                    "min_label": "very hard",
                    "max_label": "very easy",
                },
                {
                    "key": "cognitive_load",
                    "label": "How much effort did it take to read?",
                    "min": 1,
                    "max": 5,
                    "min_label": "very little",
                    "max_label": "very much",
                },
            ],
        )
    if not audit.traces.exists():
        import_file(audit=audit, path=DEMO_TRACES, segmenter_names=["given", "sentences"])
    if not audit.probe_arms:
        # Neutral labels, mapped explicitly: the annotator learns nothing from the wording.
        audit.probe_arms = [
            {"label": "Source 1", "condition": "student-after"},
            {"label": "Source 2", "condition": "teacher"},
            {"label": "Source 3", "condition": "student-before"},
        ]
        audit.full_clean()
        audit.save(update_fields=["probe_arms"])
    if not audit.batches.filter(name=DEMO_BATCH).exists():
        batch = batch_build(
            audit=audit,
            name=DEMO_BATCH,
            size=30,
            segmentation="given",
            overlap=2,
            stratify_by=["answer_correct"],
            gold=3,
            hidden_repeat_share=0.1,
        )
        clinicians = list(
            users.filter(username__in=["clinician1", "clinician2"]).order_by("username")
        )
        batch_assign(batch=batch, annotators=clinicians)
    return accounts
