from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotations.models import Audit
from annotations.selectors.users import annotators_get_by_usernames
from annotations.services.batches import batch_assign, batch_build, batch_preview
from annotations.services.leak_gate import LeakCheck, batch_leak_check
from annotations.services.sampling import Allocation
from auditapp.agreement.active import DEFAULT_FLOOR
from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError


class Command(JsonOutputMixin, BaseCommand):
    help = (
        "Sample a batch of steps stratified by condition and assign it to clinicians "
        "(each with their own order). Prints the strata."
    )

    def add_arguments(self, parser):
        parser.add_argument("--audit", required=True, help="audit slug")
        parser.add_argument("--size", type=int, required=True, help="steps (or traces) to draw")
        parser.add_argument("--overlap", type=int, default=1, help="annotators per step")
        parser.add_argument("--annotators", default="", help="NAME,NAME (clinicians)")
        parser.add_argument("--seed", default="", help="default: the batch name")
        parser.add_argument("--name", default="", help="default: batch-<n>")
        parser.add_argument("--segmentation", default="", help="default: 'given' if present")
        parser.add_argument(
            "--stratify-by-correctness",
            action="store_true",
            help="also stratify by whether the trace's final answer was correct",
        )
        parser.add_argument(
            "--stratify-by-trace-type", action="store_true", help="also stratify by trace type"
        )
        parser.add_argument(
            "--stratify-by-depth",
            action="store_true",
            help="also stratify by what an item shows of its step's place (with --allocation "
            "balanced every arm gets the same mix)",
        )
        parser.add_argument("--allocation", choices=Allocation.choices, default=Allocation.EQUAL)
        parser.add_argument(
            "--design",
            choices=["stratified", "active", "stratified-ppi"],
            default="stratified",
            help="active: within each stratum, draw with probabilities that follow the judge's "
            "uncertainty; stratified-ppi: strata condition x the judge's verdict with Neyman "
            "allocation (both need --uncertainty)",
        )
        parser.add_argument(
            "--uncertainty",
            default="",
            help="where the active design reads the judge's uncertainty, e.g. judge-runs:12 "
            "(one run with several samples per step) or judge-runs:12,13 (several judges)",
        )
        parser.add_argument(
            "--floor",
            type=float,
            default=DEFAULT_FLOOR,
            help="active design: every unit keeps at least this share of the uniform "
            "probability (default %(default)s: weights at most 1/floor times the uniform ones)",
        )
        parser.add_argument(
            "--waves",
            type=int,
            default=1,
            help="release the sample in this many waves: wave 1 when assigned, the next ones "
            "with release_wave (the report's stopping rule looks after each)",
        )
        parser.add_argument(
            "--mode",
            choices=["steps", "trace", "first_error"],
            default="",
            help="labelling mode of this batch (default: the audit's labelling_mode); trace "
            "modes draw whole traces and --size counts traces",
        )
        parser.add_argument("--gold", type=int, default=0, help="gold items (reference verdict)")
        parser.add_argument(
            "--hidden-repeats", type=float, default=None, help="share repeated unannounced"
        )
        parser.add_argument(
            "--include-batched", action="store_true", help="allow steps already in a batch"
        )
        parser.add_argument("--due", default=None, help="due date YYYY-MM-DD")
        parser.add_argument(
            "--dry-run", action="store_true", help="print the strata and the leak gate only"
        )
        parser.add_argument(
            "--confirm-leak",
            action="store_true",
            help="assign although the leak gate is above the audit's threshold (recorded)",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **opts):
        self.json_setup(opts)
        audit = Audit.objects.filter(slug=opts["audit"]).first()
        if audit is None:
            raise CommandError(f"No audit {opts['audit']!r}.")
        segmentation = opts["segmentation"] or (
            "given"
            if audit.steps.filter(segmentation="given").exists()
            else audit.steps.values_list("segmentation", flat=True).first() or ""
        )
        stratify_by = []
        if opts["stratify_by_correctness"]:
            stratify_by.append("answer_correct")
        if opts["stratify_by_trace_type"]:
            stratify_by.append("trace_type")
        if opts["stratify_by_depth"]:
            stratify_by.append("context_depth")
        name = opts["name"] or f"batch-{audit.batches.count() + 1}"
        options = dict(
            audit=audit,
            size=opts["size"],
            segmentation=segmentation,
            seed=opts["seed"] or name,
            stratify_by=stratify_by,
            allocation=opts["allocation"],
            include_batched=opts["include_batched"],
            gold=opts["gold"],
            design=opts["design"],
            uncertainty=opts["uncertainty"],
            floor=opts["floor"],
            mode=opts["mode"],
        )
        try:
            annotators = annotators_get_by_usernames(
                usernames=[n for n in opts["annotators"].split(",") if n.strip()]
            )
            if opts["dry_run"]:
                plan = batch_preview(**options)
                self._print_strata(plan.design())
                # The gate reads a stored batch: draw it (same seed, same items) and roll back.
                with transaction.atomic():
                    draft = batch_build(
                        name=f"{name[:100]} (dry run)", overlap=opts["overlap"], **options
                    )
                    self._print_leak(batch_leak_check(batch=draft))
                    transaction.set_rollback(True)
                self.finish({"batch_id": None, "dry_run": True}, "dry run: nothing stored")
                return
            # One transaction: a batch the gate refuses to assign is not left behind, so the
            # same command can be run again with --confirm-leak (or after adding a rule).
            with transaction.atomic():
                batch = batch_build(
                    name=name,
                    overlap=opts["overlap"],
                    hidden_repeat_share=opts["hidden_repeats"],
                    waves=opts["waves"],
                    **options,
                )
                self._print_strata(batch.design)
                assignments = []
                if annotators:
                    self._print_leak(batch_leak_check(batch=batch))
                    assignments = batch_assign(
                        batch=batch,
                        annotators=annotators,
                        due_date=opts["due"],
                        confirm_leak=opts["confirm_leak"],
                    )
                    for a in assignments:
                        self.say(
                            f"assigned {a.items.count()} items to {a.annotator.get_username()}"
                            f" (assignment {a.public_id})"
                        )
        except ApplicationError as exc:
            if exc.code == "leak_gate":
                raise CommandError(f"{exc.message} (--confirm-leak to assign anyway)") from exc
            raise CommandError(exc.message) from exc
        self.finish(
            {
                "batch_id": batch.pk,
                "batch": batch.name,
                "audit": audit.slug,
                "assignments": [
                    {"id": a.public_id, "annotator": a.annotator.get_username()}
                    for a in assignments
                ],
            },
            f"batch {name!r} created (id {batch.pk})",
            self.style.SUCCESS,
        )

    def _print_leak(self, check: LeakCheck) -> None:
        if not check.checked:
            self.say(f"leak gate: not checked ({check.n_items} step items, too few per arm)")
            return
        verdict = "ABOVE the threshold" if check.above else "not above the threshold"
        self.say(
            f"leak gate: AUC {check.auc:.3f} [{check.ci_low:.3f}, {check.ci_high:.3f}] on "
            f"{check.n_items} items, threshold {check.threshold:.2f}: {verdict}"
        )
        for arm, features in check.top_features.items():
            shown = ", ".join(f"{f.ngram!r} {f.count}/{f.other}" for f in features)
            self.say(f"  {arm} (items of this arm/others): {shown or '–'}")

    def _print_strata(self, design: dict) -> None:
        self.say(
            f"population {design['population']} {design['unit']}s "
            f"({design['excluded_already_batched']} already batched), "
            f"seed {design['seed']!r}, allocation {design['allocation']}"
        )
        width = max([len(s["key"]) for s in design["strata"]] + [6])
        self.say(f"{'stratum':<{width}}  {'population':>10}  {'sample':>6}  {'π':>7}")
        for s in design["strata"]:
            self.say(
                f"{s['key']:<{width}}  {s['population']:>10}  {s['sample']:>6}  "
                f"{s['inclusion_probability']:>7.4f}"
            )
        total = sum(s["sample"] for s in design["strata"])
        self.say(f"{'total':<{width}}  {design['population']:>10}  {total:>6}")
        if design.get("gold"):
            self.say(f"+ {design['gold']} gold items")
        sampling = design.get("sampling") or {}
        if sampling.get("design") == "active":
            self.say(
                f"active design: {sampling['source']}; {sampling['units_with_a_score']} units "
                f"scored; floor {sampling['floor']:g} (π per item is recorded; the column above "
                "is the stratum's average)"
            )
        if sampling.get("design") == "stratified-ppi":
            self.say(
                f"stratified PPI design: {sampling['source']}; strata condition x the judge's "
                f"verdict, Neyman allocation within each condition (sd per stratum recorded)"
            )
