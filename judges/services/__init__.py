"""Judge services, by concern (writes; reads are in ``judges.selectors``):

* ``specs`` — judges and versioned prompts from specs;
* ``runs`` — run creation and scope, life cycle, reconcile (the module docstring tells how a
  run executes);
* ``worksource`` — where lanes claim steps (a shared Redis list per run and generation);
* ``lanes`` — the lane: one long-lived request stream per share of the judge's concurrency;
* ``store`` — verdict and failure writes, exactly one per (run, step);
* ``io`` — reference runs, imported verdicts, the provider batch-API round trip.

Everything callers use is importable from ``judges.services``.
"""

from judges.services.io import (
    REFERENCE_JUDGE_NAME,
    LineProblem,
    batch_requests_export,
    batch_results_import,
    batch_run_create,
    reference_run_create,
    verdicts_import,
)
from judges.services.lanes import (
    FEED_SIZE,
    HEARTBEAT_S,
    LANE_TTL_S,
    ChunkOutcome,
    LaneOutcome,
    TransientJudgeError,
    judge_chunk_run,
    judge_lane_run,
)
from judges.services.runs import (
    DEFAULT_STALE_AFTER_S,
    run_cancel,
    run_create,
    run_enqueue_missing,
    run_fail,
    run_finish_if_complete,
    run_missing_step_ids,
    run_pause,
    run_reconcile,
    run_resume,
    run_scope_steps,
    run_status_cached,
    runs_reconcile,
    wait_poll,
)
from judges.services.specs import (
    DEFAULT_PROMPT_NAME,
    PROMPT_FIELDS,
    SPEC_FIELDS,
    JudgeSpecError,
    default_prompt_get,
    judge_create_or_update,
    judge_get,
    judge_spec_validate,
    prompt_update,
    prompt_version_create,
)
from judges.services.store import (
    FLUSH_AGE_S,
    FLUSH_ROWS,
    failures_store,
    verdict_from_result,
    verdicts_store,
)

__all__ = [
    "DEFAULT_PROMPT_NAME",
    "DEFAULT_STALE_AFTER_S",
    "FEED_SIZE",
    "FLUSH_AGE_S",
    "FLUSH_ROWS",
    "HEARTBEAT_S",
    "LANE_TTL_S",
    "PROMPT_FIELDS",
    "REFERENCE_JUDGE_NAME",
    "SPEC_FIELDS",
    "ChunkOutcome",
    "JudgeSpecError",
    "LaneOutcome",
    "LineProblem",
    "TransientJudgeError",
    "batch_requests_export",
    "batch_results_import",
    "batch_run_create",
    "default_prompt_get",
    "failures_store",
    "judge_chunk_run",
    "judge_create_or_update",
    "judge_get",
    "judge_lane_run",
    "judge_spec_validate",
    "prompt_update",
    "prompt_version_create",
    "reference_run_create",
    "run_cancel",
    "run_create",
    "run_enqueue_missing",
    "run_fail",
    "run_finish_if_complete",
    "run_missing_step_ids",
    "run_pause",
    "run_reconcile",
    "run_resume",
    "run_scope_steps",
    "run_status_cached",
    "runs_reconcile",
    "verdict_from_result",
    "verdicts_import",
    "verdicts_store",
    "wait_poll",
]
