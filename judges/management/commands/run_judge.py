from django.core.management.base import BaseCommand, CommandError

from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun
from judges.selectors import run_progress
from judges.services import (
    DEFAULT_STALE_AFTER_S,
    judge_get,
    reference_run_create,
    run_create,
    wait_poll,
)

from ._common import audit_by_slug, command_error


class Command(JsonOutputMixin, BaseCommand):
    help = (
        "Start a judge run over an audit (or one segmentation / batch). Workers must consume the "
        "'judges' queue. With --wait, print progress until the run ends (riding out database and "
        "Redis outages, saying what it waits for); exit 1 unless it is done."
    )

    def add_arguments(self, parser):
        parser.add_argument("--audit", required=True, help="the audit's slug")
        parser.add_argument("--judge", required=True, help="the judge's name")
        parser.add_argument("--segmentation", default="", help="only this segmentation")
        parser.add_argument("--batch", default="", help="only the steps of this batch (name)")
        parser.add_argument(
            "--label-mode",
            choices=["steps", "first_error"],
            default=None,
            help="steps: each step on its own; first_error: each trace's first wrong step "
            "(default: the judge's label_mode)",
        )
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--poll-s", type=float, default=1.0)
        parser.add_argument(
            "--stale-after-s",
            type=float,
            default=DEFAULT_STALE_AFTER_S,
            help="with --wait: re-enqueue missing steps after this long without progress",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **o):
        self.json_setup(o)
        audit = audit_by_slug(o["audit"])
        try:
            judge = judge_get(name=o["judge"])
            if judge.is_reference:
                if o["label_mode"] == "first_error":
                    raise CommandError("a reference judge copies step verdicts: steps mode only")
                run = reference_run_create(audit=audit, segmentation=o["segmentation"])
            else:
                run = run_create(
                    audit=audit,
                    judge=judge,
                    segmentation=o["segmentation"],
                    batch_name=o["batch"],
                    label_mode=o["label_mode"],
                )
        except ApplicationError as exc:
            raise command_error(exc) from None
        payload = {"run_id": run.pk, "judge": judge.name, "audit": audit.slug, "steps": run.total}
        started = f"run {run.pk}: {judge.name} on {audit.slug}, {run.total} steps"
        if not o["wait"]:
            self.finish(payload, started)
            return
        self.say(started)
        last = [None]

        def show(current: JudgeRun) -> None:
            p = run_progress(current)
            line = (
                f"{p['status']:>9}  {p['done']}/{p['total']} done, {p['failed']} failed, "
                f"{p['remaining']} remaining · {p['steps_per_s']:.1f} steps/s · "
                f"{p['prompt_tokens'] + p['completion_tokens']} tokens"
                + (f" · ETA {p['eta_s']:.0f}s" if p["eta_s"] is not None else "")
            )
            if p["warning"]:
                line += f"\n  waiting: {p['warning']}"
            if line != last[0]:
                self.say(line)
                last[0] = line

        def outage(service: str, exc: BaseException, delay: float) -> None:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            line = f"  waiting for the {service} ({type(exc).__name__}: {reason})"
            if line != last[0]:
                self.stdout.write(line + f"; retrying every {delay:.1f}s or so")
                self.stdout.flush()
                last[0] = line

        final = wait_poll(
            run_id=run.pk,
            every_s=o["poll_s"],
            on_progress=show,
            stale_after_s=o["stale_after_s"],
            on_outage=outage,
        )
        if final.status != JudgeRun.Status.DONE:
            raise CommandError(f"run {final.pk} ended {final.status}: {final.message}")
        self.finish({**payload, "status": final.status}, f"run {final.pk} done")
