"""Statistical efficiency of the expert-sample designs (issue 15): interval width and coverage.

Simulated audits with the paper's shape: three arms whose steps are errors at about 0.20 /
0.31 / 0.50, traces of 6-12 steps with a trace effect (correlated steps), a judge whose
sensitivity and specificity differ by arm and whose per-step reliability q varies (Beta around
its sensitivity / specificity with concentration κ = 2: some steps are ambiguous to it, some it
gets confidently wrong), sampled 5 times per step; expert labels with 5% noise and 5%
abstentions (missing at random: the inclusion probability is multiplied by 0.95). Per design
and arm it prints the mean interval half-width relative to expert-only and the coverage of the
arm's true error rate (the mean of every step's expert label), at 150 and 300 expert labels.

Two judge signals. **Votes**: the share of the 5 samples that say "error". **Token p**: the
probability the judge's own next-token distribution puts on "error" (the endpoint's
log-probabilities, ``judges.services.uncertainty``): in this model that is q itself, the
probability each vote was drawn with, so it holds everything the votes hold and more.

Designs (all estimated by ``auditapp.agreement.active.active_mean``, cluster-robust by trace,
except stratified PPI: ``stratified_ppi_mean``; the report's ``ppi_mean`` gives the same
numbers on the same sample): expert-only (uniform sample, λ = 0), PPI (uniform, λ = 1),
PPI++ on the judge's 0/1 majority verdict only (what one sample per step gives), PPI++
(uniform, tuned, on the vote share as the report uses it), stratified PPI (strata: the
judge's majority verdict, allocation ∝ N_h·sd_h, tuned), active + PPI++ (π ∝ the judge's
uncertainty with the 0.2 floor, tuned), the same with the budget split across arms ∝ their
expected spread, and PPI++ / active + PPI++ / the split across arms on the token probability
(kept within [0.05, 0.95] for π, ``error_probability``). Intervals follow the report's
small-sample rule (t with k − 1 df and CR1 below 50 labelled traces), as the report prints
them.

Then: the bound any design reaches at best from each signal (the ideal working model and
π, read off the simulated truth); how that bound and the active design move with how often
the judge is confidently wrong (κ); and the wave stopping rule on expert labels alone and on
prediction-powered increments from active draws: labels until it stops and how often the
stated ordering is wrong.

Targets: PPI++ ≤ 1.0x expert-only in every arm; active + PPI++ ≤ 0.7x in this scenario;
coverage 94-96% for every design (read against the Monte Carlo error printed); wrong-ordering
rate ≤ α; under a minute. No database: pure numpy, the replications split over 2 processes.

    .venv/bin/python bench/efficiency_bench.py [--reps 1000] [--seed 15] [--workers 2]
"""

import argparse
import itertools
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
from auditapp.agreement.sequential import ordering_decision, ppi_increments
from auditapp.agreement.stratified import neyman_allocation, stratified_ppi_mean

RATES = (0.20, 0.31, 0.50)
SENS_SPEC = ((0.85, 0.90), (0.80, 0.85), (0.75, 0.80))
KAPPA = 2.0
TRACES_PER_ARM = 300
JUDGE_SAMPLES = 5
FLOOR = 0.2
ACROSS = "active, arms ∝ sd"
TOKEN_PPI, TOKEN_ACTIVE = "PPI++, token p", "active + PPI++, token p"
TOKEN_ACROSS = "active, arms ∝ sd, token p"
VERDICT_PPI = "PPI++, 0/1 verdict"
DESIGNS = (
    "expert-only",
    "PPI",
    VERDICT_PPI,
    "PPI++",
    "stratified PPI",
    "active + PPI++",
    ACROSS,
    TOKEN_PPI,
    TOKEN_ACTIVE,
    TOKEN_ACROSS,
)
Z = 1.959963984540054


@dataclass(frozen=True)
class Arm:
    y: np.ndarray  # the expert label of every step (what an expert would say)
    votes: np.ndarray  # share of the judge's samples that say "error"
    token: np.ndarray  # the judge's token probability of "error"
    clusters: np.ndarray  # trace of each step


def simulate_arm(rng, rate, sens, spec, *, kappa=KAPPA, traces=TRACES_PER_ARM) -> Arm:
    lengths = rng.integers(6, 13, size=traces)
    clusters = np.repeat(np.arange(traces), lengths)
    effect = rng.normal(0, 0.8, traces)[clusters]
    wrong = rng.random(clusters.size) < expit(logit(rate) + effect)
    # expert label: the truth with 5% noise
    y = np.where(rng.random(clusters.size) < 0.05, ~wrong, wrong).astype(float)
    # judge: per-step reliability q drawn around its sensitivity / specificity (Beta, κ)
    mean = np.where(wrong, sens, 1 - spec)
    q = rng.beta(mean * kappa, (1 - mean) * kappa)
    votes = rng.binomial(JUDGE_SAMPLES, q) / JUDGE_SAMPLES
    return Arm(y, votes, q, clusters)


def vote_probability(arm: Arm) -> np.ndarray:
    return error_probability(sample_error_share=arm.votes, votes=JUDGE_SAMPLES)


def arm_allocation(arms, n_total, *, token=False):
    """Labels per arm ∝ the arm's expected standard deviation per label under the active
    design, mean sqrt(p (1 − p)) of the judge's error probability (Neyman across arms:
    minimises the sum of the arms' variances, hence the gaps'; no expert label needed) —
    what ``create_batch --design active --allocation uncertainty`` does."""
    m = np.array(
        [
            uncertainty_score(
                error_probability(token_probability=a.token) if token else vote_probability(a)
            ).mean()
            for a in arms
        ]
    )
    quota = n_total * m / m.sum()
    sizes = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - sizes))[: n_total - sizes.sum()]:
        sizes[i] += 1
    return sizes


def stratified_draw(rng, arm: Arm, n):
    """Strata: the judge's majority verdict; Neyman n_h ∝ N_h sqrt(p̄_h (1 − p̄_h))."""
    p = vote_probability(arm)
    strata = np.where(arm.votes > 0.5, "error", "correct")
    keys = sorted(set(strata))
    populations = {h: int((strata == h).sum()) for h in keys}
    sds = {h: float(uncertainty_score(p[strata == h].mean())) for h in keys}
    sizes = neyman_allocation(populations, sds, size=n)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(strata == h), sizes[h], replace=False) for h in keys]
    )
    return np.sort(chosen), strata


def one_design(rng, design, arm: Arm, n):
    y, clusters = arm.y, arm.clusters
    if design == "stratified PPI":
        chosen, strata = stratified_draw(rng, arm, n)
        answered = chosen[rng.random(chosen.size) >= 0.05]  # expert abstentions
        return stratified_ppi_mean(
            y[answered],
            arm.votes[answered],
            strata[answered],
            arm.votes,
            strata,
            clusters=clusters[answered],
            clusters_all=clusters,
        )
    token = design in (TOKEN_PPI, TOKEN_ACTIVE)
    f = arm.token if token else arm.votes
    if design == VERDICT_PPI:
        f = (arm.votes > 0.5).astype(float)  # the majority verdict alone, as one sample gives
    if design in ("expert-only", "PPI", "PPI++", TOKEN_PPI, VERDICT_PPI):
        pi = np.full(y.size, n / y.size)
    elif token:
        p = error_probability(token_probability=arm.token)
        pi = inclusion_probabilities(p, n=n, floor=FLOOR)
    else:
        pi = inclusion_probabilities(vote_probability(arm), n=n, floor=FLOOR)
    chosen = systematic_sample(pi, rng)
    answered = chosen[rng.random(chosen.size) >= 0.05]  # expert abstentions
    lam = {"expert-only": 0.0, "PPI": 1.0}.get(design)
    return active_mean(y[answered], answered, f, pi * 0.95, clusters=clusters, lam=lam)


def efficiency_chunk(seed, reps, n_total):
    """Half-widths and coverage for ``reps`` simulated audits (one worker's share)."""
    rng = np.random.default_rng(seed)
    per_arm, k = n_total // len(RATES), len(RATES)
    shape = (reps, 2 * k - 1)  # the arms, then the neighbouring gaps
    width = {d: np.zeros(shape) for d in DESIGNS}
    covered = {d: np.zeros(shape) for d in DESIGNS}
    for r in range(reps):
        arms = [simulate_arm(rng, rate, *ss) for rate, ss in zip(RATES, SENS_SPEC, strict=True)]
        across = arm_allocation(arms, n_total)
        across_token = arm_allocation(arms, n_total, token=True)
        for design in DESIGNS:
            ests = []
            for a, arm in enumerate(arms):
                if design == ACROSS:
                    est = one_design(rng, "active + PPI++", arm, int(across[a]))
                elif design == TOKEN_ACROSS:
                    est = one_design(rng, TOKEN_ACTIVE, arm, int(across_token[a]))
                else:
                    est = one_design(rng, design, arm, per_arm)
                ests.append(est)
                width[design][r, a] = est.ci_high - est.estimate
                covered[design][r, a] = est.ci_low <= arm.y.mean() <= est.ci_high
            for a in range(k - 1):
                gap = ests[a + 1].estimate - ests[a].estimate
                truth = arms[a + 1].y.mean() - arms[a].y.mean()
                half = Z * float(np.hypot(ests[a].se, ests[a + 1].se))
                width[design][r, k + a] = half
                covered[design][r, k + a] = abs(gap - truth) <= half
    return width, covered


def information_bound(rng, *, kappa=KAPPA, audits=20):
    """Per arm and signal, the half-width relative to expert-only that the best design seeing
    only that signal could reach (large samples): with the ideal working model E[Y | s] and
    π ∝ sd(Y | s), the variance per label is (E sd(Y | s))² against var(Y) for experts only.
    The token probability is continuous: E[Y | s] is read off 100 quantile bins."""
    bounds = {"votes": [], "token p": []}
    for rate, (sens, spec) in zip(RATES, SENS_SPEC, strict=True):
        arms = [simulate_arm(rng, rate, sens, spec, kappa=kappa) for _ in range(audits)]
        y = np.concatenate([a.y for a in arms])
        for name, signal in (("votes", "votes"), ("token p", "token")):
            s = np.concatenate([getattr(a, signal) for a in arms])
            if name == "votes":
                cells = np.unique(s, return_inverse=True)[1]
            else:
                edges = np.quantile(s, np.linspace(0, 1, 101)[1:-1])
                cells = np.searchsorted(edges, s)
            count = np.bincount(cells)
            share = np.bincount(cells, weights=y) / count
            sd = np.sqrt(share * (1 - share))[cells]
            bounds[name].append(float(sd.mean() / y.std()))
    return bounds


def sensitivity_chunk(seed, reps, kappa, n_total=300):
    """Active + PPI++ relative to expert-only per arm for a judge of concentration κ."""
    rng = np.random.default_rng(seed)
    per_arm = n_total // len(RATES)
    out = {d: np.zeros((reps, len(RATES))) for d in ("expert-only", "active + PPI++", TOKEN_ACTIVE)}
    for r in range(reps):
        for a, (rate, ss) in enumerate(zip(RATES, SENS_SPEC, strict=True)):
            arm = simulate_arm(rng, rate, *ss, kappa=kappa)
            for design in out:
                est = one_design(rng, design, arm, per_arm)
                out[design][r, a] = est.ci_high - est.estimate
    return out


def stopping_chunk(seed, reps, wave=50, budget=2000, alpha=0.05, t_opt=800):
    """The wave stopping rule, per run: labels per arm at the stop (or the budget), whether it
    stopped, whether its ordering was wrong — for expert labels drawn uniformly (increments
    y) and for active draws with replacement, per-draw probability r_i ∝ the judge's
    uncertainty (floor 0.2), whose prediction-powered increments f̄ + (y_i − f_i)/(N r_i)
    (λ = 1, fixed in advance as the rule requires) average to the arm's error rate."""
    rng = np.random.default_rng(seed)
    kinds = ("expert labels", "prediction-powered, active draws")
    result = {kind: {"used": [], "stopped": 0, "wrong": 0} for kind in kinds}
    truth = ("arm0", "arm1", "arm2")
    for _ in range(reps):
        streams = {kind: {} for kind in kinds}
        for a, (rate, ss) in enumerate(zip(RATES, SENS_SPEC, strict=True)):
            arm = simulate_arm(rng, rate, *ss, traces=2 * TRACES_PER_ARM)  # a larger audit
            answered = rng.random(budget * 2) >= 0.05  # abstentions drop out of the stream
            uniform = rng.permutation(arm.y.size)[: budget * 2][answered][:budget]
            streams[kinds[0]][f"arm{a}"] = arm.y[uniform]
            p = vote_probability(arm)
            draw = inclusion_probabilities(p, n=1, floor=FLOOR)  # per-draw probabilities
            picks = rng.choice(arm.y.size, size=budget * 2, p=draw / draw.sum())
            picks = picks[answered][:budget]
            f = arm.votes
            # one draw at a time with probability r: n = 1, π = r in f̄ + (y − f)·n/(Nπ)
            streams[kinds[1]][f"arm{a}"] = ppi_increments(
                arm.y[picks],
                f[picks],
                draw[picks] / draw.sum(),
                prediction_mean=float(f.mean()),
                n_arm=1,
                big_n_arm=arm.y.size,
            )
        for kind in kinds:
            for t in range(wave, budget + 1, wave):
                decision = ordering_decision(
                    {k: v[:t] for k, v in streams[kind].items()}, alpha=alpha, t_opt=t_opt
                )
                if decision.settled:
                    result[kind]["stopped"] += 1
                    result[kind]["wrong"] += decision.ordering != truth
                    break
            result[kind]["used"].append(t)
    return result


def _spread(pool, fn, seed, reps, workers, *args):
    """Run ``fn`` over ``workers`` independent streams of the seed, reps split between them."""
    # crc32, not hash(): str hashes change from one Python process to the next
    key = [seed, zlib.crc32(fn.__name__.encode()), *(int(a) for a in args)]
    seeds = np.random.SeedSequence(key).spawn(workers)
    shares = [reps // workers + (i < reps % workers) for i in range(workers)]
    return list(pool.map(fn, seeds, shares, *([a] * workers for a in args)))


def _stack(parts):
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start, cpu_start = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(args.seed)
    pairs = zip(RATES, SENS_SPEC, strict=True)
    seen = [rate * s + (1 - rate) * (1 - sp) for rate, (s, sp) in pairs]
    print(
        "error rates per arm "
        + " / ".join(f"{r:.2f}" for r in RATES)
        + "; as the judge sees them "
        + " / ".join(f"{r:.2f}" for r in seen)
    )
    mc = 100 * np.sqrt(0.95 * 0.05 / args.reps)
    outside = []
    with ProcessPoolExecutor(args.workers) as pool:
        for n_total in (150, 300):
            parts = _spread(pool, efficiency_chunk, args.seed, args.reps, args.workers, n_total)
            width = _stack([p[0] for p in parts])
            covered = _stack([p[1] for p in parts])
            base = width["expert-only"].mean(axis=0)
            print(f"\n{n_total} expert labels ({n_total // 3} per arm), {args.reps} replications")
            gaps = [f"gap {b:.2f}-{a:.2f}" for a, b in itertools.pairwise(RATES)]
            heads = [f"arm {r:.2f}" for r in RATES] + gaps
            columns = "".join(f"{h:>14}: width cover" for h in heads)
            print(f"{'design':<24}{columns}   all arms")
            for design in DESIGNS:
                rel = width[design].mean(axis=0) / base
                cov = covered[design].mean(axis=0)
                # expert labels an expert-only design would need for the same summed variance
                ess = float(np.sum(base[:3] ** 2) / np.sum(width[design].mean(axis=0)[:3] ** 2))
                cells = "".join(f"{w:14.2f}x {c:6.1%}" for w, c in zip(rel, cov, strict=True))
                print(f"{design:<24}{cells}   ESS {ess:4.2f}x")
                outside += [
                    f"{design} {h} at {n_total}: {c:.1%}"
                    for h, c in zip(heads, cov, strict=True)
                    if not 0.94 - 2 * mc / 100 <= c <= 0.96 + 2 * mc / 100
                ]
        print(
            f"\ncoverage: Monte Carlo standard error {mc:.1f} points at {args.reps} replications;"
            f" cells outside 94-96 % by more than 2 of them: {'; '.join(outside) or 'none'}"
        )
        bound = information_bound(rng)
        for name, values in bound.items():
            print(
                f"bound from the judge's {name} (ideal E[Y|s], π ∝ sd(Y|s)): "
                + " / ".join(f"{b:.2f}x" for b in values)
            )

        print(
            "\nhow often the judge is confidently wrong (κ: smaller is more often; the tables"
            " above are κ = 2), 300 labels"
        )
        sens_reps = max(50, args.reps // 5)
        for kappa in (5.0, 10.0):  # κ = 2 is the tables above
            parts = _spread(pool, sensitivity_chunk, args.seed, sens_reps, args.workers, kappa)
            out = _stack(parts)
            base = out["expert-only"].mean(axis=0)
            b = information_bound(rng, kappa=kappa, audits=8)
            cells = []
            for design, signal in (("active + PPI++", "votes"), (TOKEN_ACTIVE, "token p")):
                rel = out[design].mean(axis=0) / base
                cells.append(
                    f"{signal}: "
                    + " / ".join(f"{w:.2f}x" for w in rel)
                    + " (bound "
                    + " / ".join(f"{v:.2f}" for v in b[signal])
                    + ")"
                )
            print(f"κ = {kappa:>4g}, active + PPI++ per arm  " + "   ".join(cells))

        stop_reps = min(args.reps, 300)
        parts = _spread(pool, stopping_chunk, args.seed, stop_reps, args.workers)
    print(f"\nstopping rule (waves of 50 per arm, budget 2,000, α 0.05, t* 800), {stop_reps} runs:")
    for kind in parts[0]:
        used = np.concatenate([p[kind]["used"] for p in parts])
        stopped = sum(p[kind]["stopped"] for p in parts) / stop_reps
        wrong = sum(p[kind]["wrong"] for p in parts) / stop_reps
        print(
            f"  {kind:<34} stopped in {stopped:.0%} of runs, mean labels per arm "
            f"{used.mean():.0f}, wrong ordering {wrong:.1%} (target ≤ 5%)"
        )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"\ntotal {wall:.0f} s wall (target < 60 s), {cpu:.0f} s CPU in the main process")


if __name__ == "__main__":
    main()
