"""Pure statistics for StepAudit agreement reports (numpy, scipy, pandas; no Django).

Modules
-------
formats      the long formats (labels, answers, ratings): constants, loaders, validators
rates        error rate per evaluator × condition; cluster-bootstrap and Wilson intervals
orderings    conditions ranked per evaluator, pairwise differences, ordering agreement
coefficients percent agreement, Cohen/Fleiss kappa, Krippendorff's alpha, Gwet's AC1
answers      accuracy, self-consistency@k, ECE, Brier; trace × answer correctness
likert       Likert summaries, Kruskal–Wallis, Mann–Whitney with Holm correction
judge_bias   judge sensitivity/specificity against experts per condition
ppi          prediction-powered error rates (judge verdicts + expert subset): PPI and PPI++
findings     findings from pre-stated rules: does one evaluator reproduce another's ordering
controls     error rates and orderings within each level of a covariate (the paper's controls)
hedging      share of steps with hedging language per condition (versioned lexicon)
planning     sample-size and power planner with a design effect
robustness   error-rate gaps per segmentation; hidden-repeat consistency
blinding     can the condition be predicted from blinded text; blinding index
report       ``report_compute``: every section as one JSON-serialisable dict
"""

from auditapp.agreement.formats import answers_read, labels_read, ratings_read
from auditapp.agreement.orderings import ordering_agreement, orderings
from auditapp.agreement.planning import power, sample_size
from auditapp.agreement.ppi import ppi_error_rates, ppi_mean
from auditapp.agreement.rates import error_rates, wilson_interval
from auditapp.agreement.report import REPORT_KEYS, report_compute

__all__ = [
    "REPORT_KEYS",
    "answers_read",
    "error_rates",
    "labels_read",
    "ordering_agreement",
    "orderings",
    "power",
    "ppi_error_rates",
    "ppi_mean",
    "ratings_read",
    "report_compute",
    "sample_size",
    "wilson_interval",
]
