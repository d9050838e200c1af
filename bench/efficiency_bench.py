"""Statistical efficiency of the expert-sample designs (issue 15): interval width and coverage.

Simulated audits with the paper's shape: three arms whose steps are errors at about 0.20 /
0.31 / 0.50, traces of 6-12 steps with a trace effect (correlated steps), a judge sampled 5
times per step whose sensitivity and specificity differ by arm and whose per-step reliability
varies (some steps are ambiguous to it), expert labels with 5% noise and 5% abstentions
(missing at random: the inclusion probability is multiplied by 0.95). Per design and arm it
prints the mean interval half-width relative to expert-only and the coverage of the arm's true
error rate (the mean of every step's expert label), at 150 and 300 expert labels; then the
wave stopping rule: labels used until it stops and how often the stated ordering is wrong.

Designs (all estimated by ``auditapp.agreement.active.active_mean``, cluster-robust by trace):
expert-only (uniform sample, λ = 0), PPI (uniform, λ = 1), PPI++ (uniform, tuned), stratified
PPI (strata: the judge's majority verdict, allocation ∝ N_h·sd_h, tuned), active + PPI++
(π ∝ the judge's uncertainty with the 0.2 floor, tuned).

Targets: PPI++ ≤ 1.0x expert-only in every arm; active + PPI++ ≤ 0.7x in this scenario;
coverage 94-96% for every design; wrong-ordering rate ≤ α. No database: pure numpy.

    .venv/bin/python bench/efficiency_bench.py [--reps 500] [--seed 15]
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditapp.agreement.active import (
    active_mean,
    error_probability,
    inclusion_probabilities,
    systematic_sample,
    uncertainty_score,
)
from auditapp.agreement.sequential import ordering_decision
from auditapp.agreement.stratified import neyman_allocation, stratified_ppi_mean

RATES = (0.20, 0.31, 0.50)
SENS_SPEC = ((0.85, 0.90), (0.80, 0.85), (0.75, 0.80))
TRACES_PER_ARM = 300
JUDGE_SAMPLES = 5
ACROSS = "active, arms ∝ sd"
DESIGNS = ("expert-only", "PPI", "PPI++", "stratified PPI", "active + PPI++", ACROSS)


def simulate_arm(rng, rate, sens, spec):
    lengths = rng.integers(6, 13, size=TRACES_PER_ARM)
    clusters = np.repeat(np.arange(TRACES_PER_ARM), lengths)
    effect = rng.normal(0, 0.8, TRACES_PER_ARM)[clusters]
    wrong = rng.random(clusters.size) < expit(logit(rate) + effect)
    # expert label: the truth with 5% noise
    y = np.where(rng.random(clusters.size) < 0.05, ~wrong, wrong).astype(float)
    # judge: per-step reliability drawn around its sensitivity / specificity (Beta, κ = 2)
    mean = np.where(wrong, sens, 1 - spec)
    q = rng.beta(mean * 2.0, (1 - mean) * 2.0)
    f = rng.binomial(JUDGE_SAMPLES, q) / JUDGE_SAMPLES
    return y, f, clusters


def arm_allocation(fs, n_total):
    """Labels per arm ∝ the arm's expected standard deviation per label under the active
    design, mean sqrt(p (1 − p)) of the judge's smoothed error probability (Neyman across
    arms: minimises the sum of the arms' variances, hence the gaps'; no expert label needed)."""
    m = np.array(
        [
            uncertainty_score(error_probability(sample_error_share=f, votes=JUDGE_SAMPLES)).mean()
            for f in fs
        ]
    )
    quota = n_total * m / m.sum()
    sizes = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - sizes))[: n_total - sizes.sum()]:
        sizes[i] += 1
    return sizes


def stratified_draw(rng, f, n):
    """Strata: the judge's majority verdict; Neyman n_h ∝ N_h sqrt(p̄_h (1 − p̄_h))."""
    p = error_probability(sample_error_share=f, votes=JUDGE_SAMPLES)
    strata = np.where(f > 0.5, "error", "correct")
    keys = sorted(set(strata))
    populations = {h: int((strata == h).sum()) for h in keys}
    sds = {h: float(uncertainty_score(p[strata == h].mean())) for h in keys}
    sizes = neyman_allocation(populations, sds, size=n)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(strata == h), sizes[h], replace=False) for h in keys]
    )
    return np.sort(chosen), strata


def one_design(rng, design, y, f, clusters, n):
    big_n = y.size
    if design == "stratified PPI":
        chosen, strata = stratified_draw(rng, f, n)
        answered = chosen[rng.random(chosen.size) >= 0.05]  # expert abstentions
        return stratified_ppi_mean(
            y[answered],
            f[answered],
            strata[answered],
            f,
            strata,
            clusters=clusters[answered],
            clusters_all=clusters,
        )
    if design in ("expert-only", "PPI", "PPI++"):
        pi = np.full(big_n, n / big_n)
    else:
        p = error_probability(sample_error_share=f, votes=JUDGE_SAMPLES)
        pi = inclusion_probabilities(p, n=n, floor=0.2)
    chosen = systematic_sample(pi, rng)
    answered = chosen[rng.random(chosen.size) >= 0.05]  # expert abstentions
    lam = {"expert-only": 0.0, "PPI": 1.0}.get(design)
    return active_mean(y[answered], answered, f, pi * 0.95, clusters=clusters, lam=lam)


def efficiency(rng, reps, n_total):
    per_arm = n_total // len(RATES)
    k = len(RATES)
    width = {d: np.zeros((reps, k)) for d in DESIGNS}
    covered = {d: np.zeros((reps, k)) for d in DESIGNS}
    gap_width = {d: np.zeros((reps, k - 1)) for d in DESIGNS}
    gap_covered = {d: np.zeros((reps, k - 1)) for d in DESIGNS}
    z = 1.959963984540054
    for r in range(reps):
        arms = [simulate_arm(rng, rate, *ss) for rate, ss in zip(RATES, SENS_SPEC, strict=True)]
        across = arm_allocation([f for _, f, _ in arms], n_total)
        for design in DESIGNS:
            ests = []
            for a, (y, f, clusters) in enumerate(arms):
                if design == ACROSS:
                    est = one_design(rng, "active + PPI++", y, f, clusters, int(across[a]))
                else:
                    est = one_design(rng, design, y, f, clusters, per_arm)
                ests.append(est)
                width[design][r, a] = est.ci_high - est.estimate
                covered[design][r, a] = est.ci_low <= y.mean() <= est.ci_high
            for a in range(k - 1):
                gap = ests[a + 1].estimate - ests[a].estimate
                truth = arms[a + 1][0].mean() - arms[a][0].mean()
                half = z * float(np.hypot(ests[a].se, ests[a + 1].se))
                gap_width[design][r, a] = half
                gap_covered[design][r, a] = abs(gap - truth) <= half
    return width, covered, gap_width, gap_covered


def information_bound(rng, audits=20):
    """Per arm, the half-width relative to expert-only that the best design seeing only the
    judge's votes could reach (large samples): with the ideal working model E[Y | f] and
    π ∝ sd(Y | f), the variance per label is (E sd(Y | f))² against var(Y) for experts only."""
    bounds = []
    for rate, (sens, spec) in zip(RATES, SENS_SPEC, strict=True):
        arms = [simulate_arm(rng, rate, sens, spec) for _ in range(audits)]
        y = np.concatenate([a[0] for a in arms])
        f = np.concatenate([a[1] for a in arms])
        sd = np.zeros_like(y)
        for level in np.unique(f):
            sd[f == level] = y[f == level].std()
        bounds.append(float(sd.mean() / y.std()))
    return bounds


def stopping(rng, reps, wave=50, budget=2000, alpha=0.05, t_opt=800):
    used, wrong, stopped = [], 0, 0
    for _ in range(reps):
        arms: dict[str, np.ndarray] = {}
        for a, (rate, (sens, spec)) in enumerate(zip(RATES, SENS_SPEC, strict=True)):
            arms[f"arm{a}"], _, _ = simulate_arm(rng, rate, sens, spec)
            y, _, _ = simulate_arm(rng, rate, sens, spec)  # a larger audit: 2 x the traces
            arms[f"arm{a}"] = rng.permutation(np.r_[arms.get(f"arm{a}", np.array([])), y])
        for t in range(wave, budget + 1, wave):
            decision = ordering_decision(
                {k: v[:t] for k, v in arms.items()}, alpha=alpha, t_opt=t_opt
            )
            if decision.settled:
                stopped += 1
                wrong += decision.ordering != ("arm0", "arm1", "arm2")
                break
        used.append(t)
    return float(np.mean(used)), wrong / reps, stopped / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for n_total in (150, 300):
        width, covered, gap_width, gap_covered = efficiency(rng, args.reps, n_total)
        base = width["expert-only"].mean(axis=0)
        gap_base = gap_width["expert-only"].mean(axis=0)
        print(f"\n{n_total} expert labels ({n_total // 3} per arm), {args.reps} replications")
        gaps = [f"{b:.2f}-{a:.2f}" for a, b in itertools.pairwise(RATES)]
        print(
            f"{'design':<19}"
            + "".join(f"  arm {r:.2f}: width  cover" for r in RATES)
            + "".join(f"  gap {g}: width  cover" for g in gaps)
        )
        for design in DESIGNS:
            rel = list(width[design].mean(axis=0) / base)
            rel += list(gap_width[design].mean(axis=0) / gap_base)
            cov = list(covered[design].mean(axis=0)) + list(gap_covered[design].mean(axis=0))
            cells = "".join(f"        {w:5.2f}x  {c:5.1%}" for w, c in zip(rel, cov, strict=True))
            print(f"{design:<19}{cells}")
    bound = information_bound(rng)
    print(
        "\nbound for any design that sees only the judge's votes (oracle E[Y|f], π ∝ sd(Y|f)): "
        + " / ".join(f"{b:.2f}x" for b in bound)
    )
    mean_used, wrong, stopped = stopping(rng, min(args.reps, 300))
    print(
        f"\nstopping rule on expert labels (waves of 50 per arm, budget 2,000, α 0.05): "
        f"stopped in {stopped:.0%} "
        f"of runs, mean labels per arm {mean_used:.0f}, wrong ordering {wrong:.1%} (target ≤ 5%)"
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"\ntotal {wall:.0f} s wall, {cpu:.0f} s CPU (target < 60 s)")


if __name__ == "__main__":
    main()
