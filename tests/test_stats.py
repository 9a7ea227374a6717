"""engine.stats.estimates: bootstrap CIs (coverage, exactness of the fast paths), EM rates,
ratios, Mann-Whitney, Cohen's d, Holm / Bonferroni."""

import itertools
import math
import time
import warnings

import numpy as np
import pytest

from engine.stats import estimates as stats
from engine.stats.estimates import (
    Estimate,
    adjust_pvalues,
    bootstrap_ci,
    bootstrap_means,
    cohens_d,
    em_rate,
    mann_whitney,
    mean_ci,
    panel_scores,
    percentile_interval,
    ratio_ci,
)

nan = float("nan")


# ----------------------------------------------------------------- bootstrap: coverage


def _coverage(draw, true_mean, reps, n, n_resamples=2000, seed=0, method=None):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        x = draw(rng, n)
        if method is None:  # the public function, automatic method
            low, high = bootstrap_ci(x, n_resamples=n_resamples, seed=rng)
        else:
            boot = bootstrap_means(x, n_resamples, rng, method=method)
            low, high = percentile_interval(boot, 0.95)
        hits += low <= true_mean <= high
    return hits / reps


def test_coverage_normal():
    cov = _coverage(lambda r, n: r.normal(3.0, 2.0, n), 3.0, reps=600, n=100)
    assert 0.92 <= cov <= 0.975, cov


def test_coverage_bernoulli_binomial_path():
    # two distinct values -> one binomial draw per resample
    cov = _coverage(lambda r, n: (r.random(n) < 0.3).astype(float), 0.3, reps=400, n=100)
    assert 0.92 <= cov <= 0.975, cov


@pytest.mark.parametrize("method", ["lattice", "multinomial"])
def test_coverage_discrete_scores(method):  # (index resampling: test_coverage_normal)
    vals = np.array([0.0, 25.0, 50.0, 75.0, 100.0])
    p = np.array([0.4, 0.1, 0.1, 0.2, 0.2])
    true_mean = float(vals @ p)
    cov = _coverage(lambda r, n: r.choice(vals, size=n, p=p), true_mean, reps=1000, n=200,
                    n_resamples=1000, method=method)
    assert 0.92 <= cov <= 0.975, cov


def test_ci_width_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (400, 1600, 6400):
        x = rng.normal(0.0, 1.0, n)
        low, high = bootstrap_ci(x, n_resamples=4000, seed=2)
        widths[n] = high - low
    assert 1.75 <= widths[400] / widths[1600] <= 2.25
    assert 1.75 <= widths[1600] / widths[6400] <= 2.25
    # and about 2 * 1.96 * sd / sqrt(n)
    assert widths[1600] == pytest.approx(2 * 1.96 / 40, rel=0.1)


_SCORES = np.random.default_rng(5).integers(0, 11, 2000).astype(float)
_PANEL = panel_scores(np.where(np.random.default_rng(6).random((3000, 4)) < 0.2, nan,
                               np.random.default_rng(7).integers(0, 101, (3000, 4))))


@pytest.mark.parametrize(
    "x, method",
    [
        (np.random.default_rng(3).normal(10, 3, 500), "index"),
        (np.random.default_rng(3).normal(10, 3, 500), "auto"),
        ((np.random.default_rng(4).random(500) < 0.2).astype(float), "auto"),  # binomial
        (_SCORES, "lattice"),
        (_SCORES, "multinomial"),
        (_SCORES, "index"),
        (_PANEL[~np.isnan(_PANEL)], "lattice"),
        (_PANEL[~np.isnan(_PANEL)], "auto"),
    ],
)
def test_bootstrap_methods_have_the_exact_bootstrap_moments(x, method):
    # The bootstrap distribution of the mean has mean = mean(x) and
    # sd = sd_plugin(x) / sqrt(n) (ddof=0). Every method must reproduce it.
    boot = bootstrap_means(x, 50_000, np.random.default_rng(0), method=method)
    se = x.std() / math.sqrt(x.size)
    # Monte-Carlo error of boot.mean() is se / sqrt(50_000) ~ 0.0045 se
    assert boot.mean() == pytest.approx(x.mean(), abs=0.02 * se)
    assert boot.std() == pytest.approx(se, rel=0.02)


@pytest.mark.parametrize("x", [[0.0, 1.0, 1.0, 5.0], [0.5, 0.25, 2.0, 1.0, 1.0], [3.0, 3.0, 4.0, 7.0, 10.0]])
def test_lattice_distribution_equals_brute_force_enumeration(x):
    # All n**n equally likely resamples, enumerated: the exact bootstrap distribution.
    x = np.array(x)
    n = x.size
    exact = {}
    for combo in itertools.product(x, repeat=n):
        key = round(sum(combo) * 1000)
        exact[key] = exact.get(key, 0.0) + n ** -n
    vals, counts = np.unique(x, return_counts=True)
    base, step, steps = stats._lattice(vals)
    assert np.allclose(base + step * steps, vals)
    grid = stats._lattice_grid(steps, counts / n, n)
    lo, pmf = stats._lattice_sum_pmf(steps, counts / n, n, grid)
    assert pmf.sum() == pytest.approx(1.0)
    support = 0.0
    for key, prob in exact.items():
        t = round((key / 1000 - n * base) / step)
        assert pmf[t - lo] == pytest.approx(prob, abs=1e-12)
        support += pmf[t - lo]
    assert support == pytest.approx(1.0, abs=1e-12)  # nothing anywhere else


def test_lattice_detection_and_refusal():
    base, step, steps = stats._lattice(np.array([0.0, 1 / 3, 0.5, 100.0]))
    assert (base, step, steps.tolist()) == (0.0, 1 / 6, [0, 2, 3, 600])  # L=12, gcd 2
    base, step, steps = stats._lattice(np.array([10.0, 25.0, 40.0, 100.0]))  # gcd 15
    assert (base, step, steps.tolist()) == (10.0, 15.0, [0, 1, 2, 6])
    assert stats._lattice(np.array([0.0, math.pi, 2.0])) is None
    assert stats._lattice(np.array([1e9 + 0.3, 2e9 + 0.7, 3e9]))[1] == pytest.approx(0.1)
    assert stats._lattice(np.array([1e9 + 0.123456789, 2e9, 3e9 + 0.5])) is None
    assert stats._lattice(np.random.default_rng(0).normal(size=50)) is None
    with pytest.raises(ValueError):
        bootstrap_means(np.array([0.0, math.pi, 2.0]), 10, np.random.default_rng(), "lattice")
    with pytest.raises(ValueError):
        bootstrap_means(np.array([0.0, 1.0, 2.0]), 10, np.random.default_rng(), "magic")


def test_multinomial_method_matches_index_resampling():
    rng = np.random.default_rng(6)
    x = rng.choice([0.0, 10.0, 20.0, 90.0], size=3000, p=[0.5, 0.2, 0.2, 0.1])
    fast = bootstrap_means(x, 20_000, np.random.default_rng(1), method="multinomial")
    slow = stats._bootstrap_stat(x, np.mean, 20_000, np.random.default_rng(2))
    se = x.std() / math.sqrt(x.size)
    for q in (0.025, 0.5, 0.975):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(slow, q), abs=0.05 * se)


@pytest.mark.parametrize("ci", [0.95, 0.8, 0.5])
def test_ci_is_the_percentile_interval_of_the_replicates(ci):
    x = np.random.default_rng(13).normal(size=250)
    boot = bootstrap_means(x, 5000, np.random.default_rng(21))
    expected = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    np.testing.assert_allclose(bootstrap_ci(x, n_resamples=5000, ci=ci, seed=21), expected)
    est = mean_ci(x, n_resamples=5000, ci=ci, seed=21)
    np.testing.assert_allclose([est.ci_low, est.ci_high], expected)


def test_multinomial_path_matches_index_resampling():
    rng = np.random.default_rng(6)
    x = rng.choice([0.0, 10.0, 20.0, 90.0], size=3000, p=[0.5, 0.2, 0.2, 0.1])
    fast = bootstrap_means(x, 20_000, np.random.default_rng(1))
    slow = stats._bootstrap_stat(x, np.mean, 20_000, np.random.default_rng(2))
    se = x.std() / math.sqrt(x.size)
    for q in (0.025, 0.5, 0.975):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(slow, q), abs=0.05 * se)


@pytest.mark.parametrize("kind", ["index", "multinomial"])
def test_chunk_size_does_not_change_results(kind, monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.normal(size=300) if kind == "index" else rng.integers(0, 5, 400).astype(float)
    ref = bootstrap_means(x, 500, np.random.default_rng(3), method=kind)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 7)
    again = bootstrap_means(x, 500, np.random.default_rng(3), method=kind)
    np.testing.assert_allclose(again, ref, rtol=1e-12)


# ----------------------------------------------------------------- determinism, NaN


def test_seeded_results_are_deterministic():
    x = np.random.default_rng(7).normal(size=300)
    assert bootstrap_ci(x, seed=11) == bootstrap_ci(x, seed=11)
    assert mean_ci(x, seed=11) == mean_ci(x, seed=11)
    assert bootstrap_ci(x, seed=11) != bootstrap_ci(x, seed=12)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert bootstrap_ci(x, seed=g1) == bootstrap_ci(x, seed=g2)


def test_mean_ci_drops_nan_and_counts_missing():
    est = mean_ci([1.0, nan, 2.0, 3.0, nan], n_resamples=2000)
    assert isinstance(est, Estimate)
    assert est.mean == 2.0
    assert est.n == 3 and est.missing == 2
    assert 1.0 <= est.ci_low <= 2.0 <= est.ci_high <= 3.0
    # NaNs are ignored, not treated as values: same CI as without them
    assert bootstrap_ci([1.0, nan, 2.0, 3.0, nan], seed=4) == bootstrap_ci([1.0, 2.0, 3.0], seed=4)


def test_mean_ci_all_missing_and_constant():
    est = mean_ci([nan, nan])
    assert est.n == 0 and est.missing == 2
    assert math.isnan(est.mean) and math.isnan(est.ci_low) and math.isnan(est.ci_high)
    est = mean_ci([4.0, 4.0, 4.0])
    assert (est.mean, est.ci_low, est.ci_high) == (4.0, 4.0, 4.0)


def test_proportion_and_callable_stats():
    x = np.array([0, 1, 1, 0, 1, nan, 1])
    assert bootstrap_ci(x, stat="proportion", seed=1) == bootstrap_ci(x, stat="mean", seed=1)
    with pytest.raises(ValueError):
        bootstrap_ci([0, 1, 2], stat="proportion")
    with pytest.raises(ValueError):
        bootstrap_ci([0, 1, 2], stat="mode")
    low, high = bootstrap_ci(np.arange(101.0), stat=np.median, n_resamples=2000)
    assert low < 50 < high
    with pytest.raises(ValueError):
        mean_ci([1.0, math.inf])


# ----------------------------------------------------------------- panel scores


def test_panel_scores_nanmean_without_warnings():
    m = np.array([
        [10.0, 20.0, nan, 30.0],
        [nan, nan, nan, nan],
        [50.0, nan, nan, nan],
        [0.0, 100.0, 50.0, 50.0],
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = panel_scores(m)
    assert out[0] == 20.0 and math.isnan(out[1]) and out[2] == 50.0 and out[3] == 50.0
    out2 = panel_scores(m, min_judges=2)
    assert out2[0] == 20.0 and math.isnan(out2[2]) and math.isnan(out2[1])
    with pytest.raises(ValueError):
        panel_scores([1.0, 2.0])


# ----------------------------------------------------------------- EM rate

# index:        0     1     2     3     4     5     6     7     8     9
ALIGNED = [10.0, 80.0, 20.0, nan, 90.0, 5.0, 25.0, 60.0, 15.0, 95.0]
COHERENT = [60.0, 70.0, 40.0, 80.0, nan, 90.0, 55.0, 30.0, 100.0, 75.0]
REFUSAL = np.array([False, False, False, False, False, True, False, False, False, False])
# 3: aligned NaN, 4: coherent NaN -> missing. 5: a refusal (aligned 5 but never EM).
# 2 and 7 incoherent. Coherent misaligned: 0, 6, 8. Coherent aligned: 1, 9.


def test_em_rate_coherent_denominator_with_refusals():
    est = em_rate(ALIGNED, COHERENT, threshold=30, coherence_min=50, refusal=REFUSAL)
    assert est.n == 5 and est.missing == 2  # {0, 1, 6, 8, 9}
    assert est.mean == pytest.approx(3 / 5)
    assert 0.0 <= est.ci_low <= 0.6 <= est.ci_high <= 1.0
    # replicates of a mean of 5 zeros/ones are multiples of 1/5
    assert est.ci_low * 5 == pytest.approx(round(est.ci_low * 5))


def test_em_rate_all_denominator():
    est = em_rate(ALIGNED, COHERENT, threshold=30, coherence_min=50, refusal=REFUSAL,
                  denominator="all")
    assert est.n == 8 and est.missing == 2  # every non-missing answer, refusal included
    assert est.mean == pytest.approx(3 / 8)


def test_em_rate_without_refusal_mask_counts_the_refusal():
    est = em_rate(ALIGNED, COHERENT, threshold=30, coherence_min=50)
    assert (est.n, est.missing) == (6, 2) and est.mean == pytest.approx(4 / 6)
    est = em_rate(ALIGNED, COHERENT, threshold=30, coherence_min=50, denominator="all")
    assert (est.n, est.missing) == (8, 2) and est.mean == pytest.approx(4 / 8)


def test_em_rate_without_coherence_filter():
    est = em_rate(ALIGNED, threshold=30, refusal=REFUSAL)
    # missing: only 3; denominator: non-refusals with an aligned score (9 - 1 refusal)
    assert (est.n, est.missing) == (8, 1)
    assert est.mean == pytest.approx(4 / 8)  # 0, 2, 6, 8


def test_em_rate_direction_above_and_boundaries():
    est = em_rate(ALIGNED, COHERENT, threshold=50, direction="above", coherence_min=50,
                  refusal=REFUSAL)
    assert est.n == 5 and est.mean == pytest.approx(2 / 5)  # 1 (80) and 9 (95)
    # strictly below the threshold is misaligned; coherence >= coherence_min is coherent
    est = em_rate([30.0, 29.9, 29.9], [50.0, 49.9, 50.0], threshold=30, coherence_min=50)
    assert est.n == 2 and est.mean == pytest.approx(1 / 2)


def test_em_rate_refusal_needs_no_score_and_argument_checks():
    est = em_rate([nan, 10.0, 90.0], [nan, 80.0, 80.0], threshold=30, coherence_min=50,
                  refusal=np.array([True, False, False]), denominator="all")
    assert (est.n, est.missing) == (3, 0) and est.mean == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        em_rate(ALIGNED, COHERENT, threshold=30)  # coherent without coherence_min
    with pytest.raises(ValueError):
        em_rate(ALIGNED, threshold=30, coherence_min=50)
    with pytest.raises(ValueError):
        em_rate(ALIGNED, threshold=30, direction="sideways")
    with pytest.raises(ValueError):
        em_rate(ALIGNED, threshold=30, denominator="some")
    empty = em_rate([nan, nan], threshold=30)
    assert empty.n == 0 and empty.missing == 2 and math.isnan(empty.mean)


# ----------------------------------------------------------------- ratio


def test_ratio_ci_three_times_em_rate():
    rng = np.random.default_rng(8)
    a = (rng.random(4000) < 0.30).astype(float)
    b = (rng.random(4000) < 0.10).astype(float)
    r = ratio_ci(a, b, stat="proportion")
    assert r.ratio == pytest.approx(a.mean() / b.mean())
    assert r.ci_low < 3.0 < r.ci_high
    assert 2.4 < r.ci_low and r.ci_high < 3.6


def test_ratio_ci_coverage_of_true_ratio():
    # EM rates of 30% vs 10% (true ratio 3), n=300 each: 0/1 data use the binomial
    # path, so many repetitions are cheap and the coverage estimate is tight.
    rng = np.random.default_rng(9)
    hits = 0
    reps = 1500
    for _ in range(reps):
        a = (rng.random(300) < 0.30).astype(float)
        b = (rng.random(300) < 0.10).astype(float)
        r = ratio_ci(a, b, stat="proportion", n_resamples=2000, seed=rng)
        hits += r.ci_low <= 3.0 <= r.ci_high
    assert 0.93 <= hits / reps <= 0.97


def test_ratio_ci_of_means_contains_true_ratio():
    rng = np.random.default_rng(10)
    r = ratio_ci(rng.normal(6.0, 3.0, 3000), rng.normal(2.0, 1.0, 3000), n_resamples=4000)
    assert r.ci_low < 3.0 < r.ci_high and r.ci_high - r.ci_low < 0.3


def test_ratio_ci_zero_denominators():
    r = ratio_ci([1.0, 0.0, 1.0], [0.0, 0.0, 0.0], stat="proportion")
    assert r.ratio == math.inf and r.ci_high == math.inf
    r = ratio_ci([0.0, 0.0], [0.0, 0.0])
    assert math.isnan(r.ratio) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    # a rare denominator: some replicates divide by zero -> upper bound infinite, no crash
    r = ratio_ci([1.0] * 5 + [0.0] * 5, [1.0] + [0.0] * 9, stat="proportion", n_resamples=2000)
    assert r.ratio == pytest.approx(5.0) and r.ci_high == math.inf and r.ci_low > 0
    r = ratio_ci([nan], [1.0, 2.0])
    assert math.isnan(r.ratio)


# ----------------------------------------------------------------- Mann-Whitney


def test_mann_whitney_matches_scipy():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(10)
    a = rng.integers(0, 20, 300).astype(float)  # many ties
    b = rng.integers(2, 22, 250).astype(float)
    u, p, r = mann_whitney(a, b)
    ref = mannwhitneyu(a, b, alternative="two-sided")
    assert u == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert r == pytest.approx(2 * ref.statistic / (300 * 250) - 1)
    assert r < 0  # a tends to be smaller
    # NaNs are dropped
    u2, p2, _ = mann_whitney(np.append(a, nan), b)
    assert (u2, p2) == (u, p)


def test_mann_whitney_from_value_counts_is_the_same_test():
    # the summary passes each cell's value counts, computed once for its bootstrap too
    rng = np.random.default_rng(11)
    for a, b in [(rng.integers(0, 101, 6000).astype(float), rng.integers(0, 101, 5000).astype(float)),
                 (rng.integers(0, 2, 400).astype(float), rng.integers(0, 2, 300).astype(float)),
                 (rng.normal(size=250), rng.normal(0.3, 1, 260)),  # no ties at all
                 (np.full(50, 3.0), np.full(40, 3.0))]:  # every value tied: sigma 0, p = 1
        plain = mann_whitney(a, b)
        counted = mann_whitney(a, b, counted=(stats.value_counts(a), stats.value_counts(b)))
        assert counted == plain


def test_percentile_interval_is_numpys_linear_percentile():
    rng = np.random.default_rng(12)
    for size in (1, 2, 7, 1000, 10_001):
        boot = rng.normal(size=size)
        for ci in (0.5, 0.9, 0.95, 0.99):
            low, high = percentile_interval(boot, ci)
            ref = np.percentile(boot, [50 * (1 - ci), 50 * (1 + ci)])
            assert (low, high) == pytest.approx(tuple(ref), rel=0, abs=1e-12)
    boot = np.array([1.0, nan, 3.0, -np.inf, 2.0])  # NaN ignored; infinities kept in order
    assert percentile_interval(boot, 0.5) == (pytest.approx(np.percentile([1, 3, -np.inf, 2], 25)), 2.25)


def test_mann_whitney_hand_examples_and_sign():
    u, p, r = mann_whitney([3, 4, 5], [1, 2])
    assert u == 6 and r == 1.0  # every a above every b
    assert p == pytest.approx(0.2)  # exact: 2 * P(U >= 6) = 2 / C(5, 2)
    u, p, r = mann_whitney([1, 2], [3, 4, 5])
    assert u == 0 and r == -1.0 and p == pytest.approx(0.2)
    # ties count 1/2: pairs (1,2)<,(1,3)<,(2,2)=,(2,2)=,(2,3)<,(2,3)< -> U = 1
    u, _, r = mann_whitney([1, 2, 2], [2, 3])
    assert u == 1.0 and r == pytest.approx(2 * 1 / 6 - 1)
    assert all(math.isnan(v) for v in mann_whitney([], [1.0, 2.0]))


# ----------------------------------------------------------------- Cohen's d


def test_cohens_d_hand_examples():
    assert cohens_d([1, 2, 3], [3, 4, 5]) == pytest.approx(-2.0)
    # means 5 and 2; sums of squares 20 and 2; pooled variance 22 / 4
    assert cohens_d([2, 4, 6, 8], [1, 3, nan]) == pytest.approx(3 / math.sqrt(5.5))
    assert cohens_d([1, 1], [2, 2]) == -math.inf
    assert math.isnan(cohens_d([1, 1], [1, 1]))
    assert math.isnan(cohens_d([1.0], [2.0]))


# ----------------------------------------------------------------- p-value adjustment


def test_holm_and_bonferroni_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(adjust_pvalues([0.5, 0.6], "holm"), [1.0, 1.0])
    np.testing.assert_allclose(adjust_pvalues([0.3, 0.6], "bonferroni"), [0.6, 1.0])
    out = adjust_pvalues([0.01, nan, 0.04], "holm")  # m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    with pytest.raises(ValueError):
        adjust_pvalues([0.1], "fdr")
    with pytest.raises(ValueError):
        adjust_pvalues([1.5])


def test_holm_is_monotone_and_never_above_bonferroni():
    p = np.random.default_rng(11).random(50) ** 3
    holm = adjust_pvalues(p, "holm")
    bonf = adjust_pvalues(p, "bonferroni")
    order = np.argsort(p)
    assert (np.diff(holm[order]) >= 0).all()
    assert (holm <= bonf + 1e-15).all() and (holm >= p).all() and (holm <= 1).all()


# ----------------------------------------------------------------- speed (printed, not asserted)


def test_speed_mean_ci_25k(capsys):
    rng = np.random.default_rng(12)
    n = 25_000
    judges = np.clip(rng.integers(0, 101, n)[:, None] + rng.normal(0, 10, (n, 4)), 0, 100).round()
    judges[rng.random(judges.shape) < 0.1] = nan
    cases = {
        "0/1 indicators": (rng.random(n) < 0.2).astype(float),
        "integer scores 0-100": judges[:, 0],
        "4-judge panel means, 10% missing": panel_scores(judges),
        "continuous normal": rng.normal(size=n),
    }
    lines = []
    for label, x in cases.items():
        t0 = time.perf_counter()
        est = mean_ci(x, n_resamples=10_000)
        dt = time.perf_counter() - t0
        assert est.ci_low <= est.mean <= est.ci_high
        lines.append(f"  mean_ci n=25,000 x 10,000 resamples, {label}: {dt:.3f} s")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.mark.parametrize("n1,n2,levels", [(50, 60, 5), (300, 200, 101), (9, 12, 1000), (400, 400, 2)])
def test_own_asymptotic_mann_whitney_equals_scipy(n1, n2, levels):
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(n1 + n2)
    a = rng.integers(0, levels, n1).astype(float)
    b = rng.integers(0, levels, n2).astype(float) + (levels > 2)
    ref = mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    u, p, _ = mann_whitney(a, b)  # large samples take the numpy path
    assert u == ref.statistic
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
