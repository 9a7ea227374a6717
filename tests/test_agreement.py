"""engine.stats.agreement: Krippendorff's alpha (package and own path), its bootstrap CI,
weighted Cohen's kappa."""

import itertools
import math
import warnings

import krippendorff
import numpy as np
import pytest

from engine.stats import agreement
from engine.stats.agreement import LEVELS, alpha_with_ci, krippendorff_alpha, weighted_kappa

nan = float("nan")

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 observers x 12 units
# (also the Wikipedia example). Published: nominal .743, ordinal .815, interval .849,
# ratio .797.
CLASSIC = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
])
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


@pytest.fixture(params=["package", "own"])
def path(request, monkeypatch):
    """Run a test through krippendorff.alpha and through the numpy implementation."""
    if request.param == "own":
        monkeypatch.setattr(agreement, "_PACKAGE_MAX_CELLS", -1)
    return request.param


@pytest.mark.parametrize("level", LEVELS)
def test_classic_example_matches_paper_and_package(level, path):
    a = krippendorff_alpha(CLASSIC, level)
    assert round(a, 3) == PUBLISHED[level]
    ref = krippendorff.alpha(reliability_data=CLASSIC, level_of_measurement=level)
    assert a == pytest.approx(ref, abs=1e-12)


def test_nominal_hand_computed(path):
    # Two coders, units (1,1) (1,2) (2,2) (2,2). Coincidences: o11 = 2, o12 = o21 = 1,
    # o22 = 4; n1 = 3, n2 = 5, n = 8.
    # alpha = 1 - (n - 1) * (o12 + o21) / (n1 n2 + n2 n1) = 1 - 7 * 2 / 30 = 8 / 15
    data = [[1, 1, 2, 2], [1, 2, 2, 2]]
    assert krippendorff_alpha(data, "nominal") == pytest.approx(8 / 15)


@pytest.mark.parametrize("level", LEVELS)
def test_own_implementation_matches_package_on_random_data(level, monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(agreement, "_PACKAGE_MAX_CELLS", -1)
    checked = 0
    for _ in range(40):
        r, n, v = rng.integers(2, 7), rng.integers(3, 60), rng.integers(2, 9)
        x = (rng.integers(0, v, size=(r, n)) + rng.integers(0, 4)).astype(float)
        x[rng.random((r, n)) < 0.5 * rng.random()] = nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ref = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
            except ValueError:
                ref = nan
        own = krippendorff_alpha(x, level)
        if math.isnan(ref):
            assert math.isnan(own)
            continue
        assert own == pytest.approx(ref, abs=1e-10)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("level", LEVELS)
def test_perfect_agreement_is_one(level, path):
    assert krippendorff_alpha([[1, 2, 3, 1], [1, 2, 3, 1]], level) == pytest.approx(1.0)
    # unit 3 has a single rating: not pairable, ignored
    data = [[1, 2, nan, 3], [1, 2, 5, 3], [nan, 2, nan, 3]]
    assert krippendorff_alpha(data, level) == pytest.approx(1.0)


@pytest.mark.parametrize("level", LEVELS)
def test_undefined_alpha_is_nan_without_warnings(level, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(krippendorff_alpha([[2, 2, 2], [2, 2, 2]], level))  # no variation
        assert math.isnan(krippendorff_alpha([[1, nan], [nan, 2]], level))  # nothing pairable
        # the only other value (5) is in a unit with a single rating
        assert math.isnan(krippendorff_alpha([[1, 1, nan], [1, 1, 5]], level))
        out = alpha_with_ci([[2, 2, 2], [2, 2, 2]], level)
        assert all(math.isnan(v) for v in out[:3]) and out[3] == 3
    out = alpha_with_ci([[1, nan], [nan, 2]], level)
    assert all(math.isnan(v) for v in out[:3]) and out[3] == 0
    with pytest.raises(ValueError):
        krippendorff_alpha(CLASSIC, "cardinal")
    with pytest.raises(ValueError):
        krippendorff_alpha([1, 2, 3], "nominal")


def test_alpha_with_ci_on_classic():
    a, low, high, n_items = alpha_with_ci(CLASSIC, "nominal", n_resamples=2000)
    assert a == pytest.approx(0.743, abs=5e-4)
    assert n_items == 11  # unit 12 has a single rating
    assert low <= a <= high and -1 <= low and high <= 1
    assert alpha_with_ci(CLASSIC, "nominal", n_resamples=500, seed=3) == \
        alpha_with_ci(CLASSIC, "nominal", n_resamples=500, seed=3)


def _simulated(rng, n_items, n_raters=4, noise=12.0, missing=0.1):
    truth = rng.integers(0, 101, n_items)
    x = np.clip(truth[None, :] + rng.normal(0, noise, (n_raters, n_items)), 0, 100).round()
    x[rng.random(x.shape) < missing] = nan
    return x


@pytest.mark.parametrize("level", ["interval", "nominal"])
def test_item_pattern_path_matches_index_path(level, monkeypatch):
    rng = np.random.default_rng(1)
    x = _simulated(rng, 3000)
    if level == "nominal":  # binary labels: few distinct item patterns
        x = np.where(np.isnan(x), nan, (x < 30).astype(float))
    monkeypatch.setattr(agreement, "_TYPES_FACTOR", 0)  # always group item patterns
    grouped = alpha_with_ci(x, level, n_resamples=2000, seed=1)
    monkeypatch.setattr(agreement, "_TYPES_FACTOR", 10**9)  # never group
    plain = alpha_with_ci(x, level, n_resamples=2000, seed=2)
    assert grouped[0] == plain[0] and grouped[3] == plain[3]
    half = (plain[2] - plain[1]) / 2
    assert grouped[1] == pytest.approx(plain[1], abs=0.1 * half)
    assert grouped[2] == pytest.approx(plain[2], abs=0.1 * half)


@pytest.mark.parametrize("level", LEVELS)
def test_bootstrap_se_matches_sampling_spread(level):
    # Over repeated samples from one process, the spread of alpha (its true sampling SD)
    # should match the bootstrap's CI half-width / 1.96.
    rng = np.random.default_rng(2)
    alphas, halves = [], []
    for _ in range(40):
        x = _simulated(rng, 300, noise=20.0)
        if level == "ordinal":  # a 1-5 scale
            x = np.where(np.isnan(x), nan, np.ceil((x + 0.5) / 20.2))
        elif level == "nominal":  # binary labels
            x = np.where(np.isnan(x), nan, (x < 30).astype(float))
        a, low, high, n_items = alpha_with_ci(x, level, n_resamples=400, seed=rng)
        assert low <= a <= high and n_items <= 300
        alphas.append(a)
        halves.append((high - low) / 2)
    ratio = (np.mean(halves) / 1.96) / np.std(alphas, ddof=1)
    assert 0.7 <= ratio <= 1.4, ratio


@pytest.mark.parametrize("level", LEVELS)
def test_sparse_features_and_chunking_change_nothing(level, monkeypatch):
    # Tiny chunks force scipy.sparse features and one replicate per chunk; the random
    # stream is consumed in the same order, so the result must be the same.
    rng = np.random.default_rng(4)
    x = _simulated(rng, 200)
    if level == "ordinal":
        x = np.where(np.isnan(x), nan, np.ceil((x + 0.5) / 20.2))
    ref = alpha_with_ci(x, level, n_resamples=300, seed=5)
    assert ref[0] == pytest.approx(
        krippendorff.alpha(reliability_data=x, level_of_measurement=level), abs=1e-10)
    monkeypatch.setattr(agreement, "_PACKAGE_MAX_CELLS", -1)
    monkeypatch.setattr(agreement, "_CHUNK_ELEMENTS", 10)
    out = alpha_with_ci(x, level, n_resamples=300, seed=5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("raters", [4, 30])  # 30 raters: too wide to encode rows as integers
def test_item_types_count_identical_rating_patterns(raters):
    rng = np.random.default_rng(5)
    x = rng.integers(1, 6, size=(raters, 500)).astype(float)
    x[rng.random(x.shape) < 0.3] = nan
    x[:, 250:] = x[:, :250]  # every pattern at least twice
    p = agreement._Pairable(x)
    types, counts = agreement._item_types(p)
    ref_types, ref_counts = np.unique(p.key, axis=0, return_counts=True)
    order = np.lexsort(types.T[::-1])
    np.testing.assert_array_equal(types[order], ref_types)
    np.testing.assert_array_equal(counts[order], ref_counts)
    assert counts.sum() == p.n_items and (counts >= 2).all()


# ----------------------------------------------------------------- weighted kappa


def test_kappa_wikipedia_two_by_two():
    # 50 proposals: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 -> kappa = 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    for w in (None, "linear", "quadratic"):  # two categories: all weightings agree
        assert weighted_kappa(a, b, weights=w) == pytest.approx(0.4)


def test_kappa_three_categories_hand_computed():
    # pairs (a,b): (1,1) (1,2) (2,2) (2,3) (3,3) (3,3) (3,1) (1,1); n = 8
    # counts O = [[2,1,0],[0,1,1],[1,0,2]]; row sums [3,2,3], column sums [3,2,3]
    # unweighted: p_o = 5/8, p_e = 22/64 -> (20/32 - 11/32) / (21/32) = 3/7
    # linear (w=|i-j|/2): Σw·O = 2/8, Σw·E = 30/64 -> 1 - (1/4)/(15/32) = 7/15
    # quadratic (w=(i-j)²/4): Σw·O = 1.5/8, Σw·E = 24/64 -> 1 - (3/16)/(3/8) = 1/2
    a = [1, 1, 2, 2, 3, 3, 3, 1]
    b = [1, 2, 2, 3, 3, 3, 1, 1]
    assert weighted_kappa(a, b, weights=None) == pytest.approx(3 / 7)
    assert weighted_kappa(a, b, weights="linear") == pytest.approx(7 / 15)
    assert weighted_kappa(a, b, weights="quadratic") == pytest.approx(1 / 2)
    assert weighted_kappa(a, b) == pytest.approx(1 / 2)  # quadratic by default
    assert weighted_kappa(b, a, weights="linear") == pytest.approx(7 / 15)  # symmetric
    # an unused category at the end changes no distance between used ones
    assert weighted_kappa(a, b, weights="linear", labels=[1, 2, 3, 4]) == pytest.approx(7 / 15)
    # reversing the scale keeps distances
    assert weighted_kappa(a, b, labels=[3, 2, 1]) == pytest.approx(1 / 2)
    # NaN on either side drops the pair
    assert weighted_kappa(a + [nan, 2], b + [1, nan]) == pytest.approx(1 / 2)


def test_kappa_perfect_and_degenerate():
    assert weighted_kappa([0, 1, 2, 2], [0, 1, 2, 2]) == 1.0
    assert weighted_kappa([0, 1, 2, 2], [0, 1, 2, 2], weights=None) == 1.0
    assert math.isnan(weighted_kappa([1, 1, 1], [1, 1, 1]))  # one category: chance = 1
    assert math.isnan(weighted_kappa([nan], [1]))
    with pytest.raises(ValueError):
        weighted_kappa([1, 2, 5], [1, 2, 3], labels=[1, 2, 3])
    with pytest.raises(ValueError):
        weighted_kappa([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        weighted_kappa([1, 2], [1, 2], weights="cubic")


def test_stratified_alphas_match_the_per_group_bootstrap():
    from engine.stats.agreement import alpha_with_ci, krippendorff_alpha, stratified_alphas

    rng = np.random.default_rng(3)
    n = 600
    truth = rng.integers(0, 4, n).astype(float)
    groups = np.repeat([1, 2, 3], n // 3)
    noise = np.where(groups == 3, 1.2, 0.4)  # the third group agrees much less
    data = np.vstack([np.clip(np.rint(truth + rng.normal(0, noise)), 0, 3) for _ in range(3)])
    data[0, rng.random(n) < 0.1] = np.nan
    res = stratified_alphas({"m": data, "m2": data[:2]}, groups, n_resamples=2000, seed=1)
    for level in ("interval", "ordinal"):
        assert res[("m", level, "all")][0] == pytest.approx(krippendorff_alpha(data, level))
        for g in (1, 2, 3):
            alpha, low, high, n_items = res[("m", level, g)]
            ref = alpha_with_ci(data[:, groups == g], level, n_resamples=2000, seed=2)
            assert alpha == pytest.approx(ref[0]) and n_items == ref[3]
            assert low == pytest.approx(ref[1], abs=0.03) and high == pytest.approx(ref[2], abs=0.03)
        a, lo, hi, _ = res[("m", level, "all")]
        assert lo < a < hi and hi - lo < 0.1  # pooled over 600 items: a tight interval around the estimate
    assert res[("m", "interval", 3)][0] < res[("m", "interval", 1)][0]
    assert ("m2", "ordinal", "all") in res


def test_stratified_alphas_do_not_depend_on_threads(monkeypatch):
    """Seeded agreement CIs are the same to the last bit whatever the threads do: each chunk
    is drawn from its own generator and the pooled sums are added in group order."""
    from engine.stats.agreement import stratified_alphas, stratified_replicates

    monkeypatch.setattr(agreement, "_CHUNK_ELEMENTS", 400)  # several chunks
    rng = np.random.default_rng(8)
    # four raters: an item's pairs weigh 1/3, which binary floats round, so the order of sums shows
    groups = np.repeat([7, 8, 9, 10, 11, 12, 13, 14], 60)
    data = np.clip(np.rint(rng.normal(50, 25, groups.size) + rng.normal(0, 10, (4, groups.size))), 0, 100)
    data[rng.random(data.shape) < 0.1] = np.nan
    one = stratified_alphas({"m": data}, groups, n_resamples=200, seed=2, threads=1)
    reps = stratified_replicates({"m": data}, groups, n_resamples=200, seed=2, threads=1)
    for threads in (4, 4, 3):
        assert stratified_alphas({"m": data}, groups, n_resamples=200, seed=2, threads=threads) == one
        again = stratified_replicates({"m": data}, groups, n_resamples=200, seed=2, threads=threads)
        assert all(np.array_equal(again[key][1], reps[key][1]) for key in reps)
    for g in (7, 8, 9, 10, "all"):  # the ordinal closed form on a 0-100 scale against the package
        assert one[("m", "ordinal", g)][0] == pytest.approx(
            krippendorff.alpha(reliability_data=data[:, groups == g] if g != "all" else data,
                               level_of_measurement="ordinal"), abs=1e-9)


def test_pairwise_kappas_are_weighted_kappa_per_pair():
    from engine.stats.agreement import pairwise_kappas

    rng = np.random.default_rng(21)
    m = np.clip(np.rint(rng.normal(5, 2, (300, 1)) + rng.normal(0, 1, (300, 4))), 0, 10)
    m[rng.random(m.shape) < 0.1] = np.nan
    m[:5, 3] = 17.0  # a value only one judge used: each pair has its own labels
    m[:, 2] = np.where(np.arange(300) < 290, np.nan, m[:, 2])  # a judge with few ratings
    got = pairwise_kappas(m, "quadratic")
    assert sorted(got) == [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for (i, j), (kappa, n) in got.items():
        both = ~np.isnan(m[:, i]) & ~np.isnan(m[:, j])
        assert n == both.sum()
        assert kappa == pytest.approx(weighted_kappa(m[:, i], m[:, j], "quadratic"), abs=1e-12)
    lonely = np.array([[1.0, np.nan], [np.nan, 2.0]])
    kappa, n = pairwise_kappas(lonely)[(0, 1)]
    assert math.isnan(kappa) and n == 0


def _resampled(data: np.ndarray, groups: np.ndarray, counts: dict, g: object) -> np.ndarray:
    """The items of a replicate: each group's items repeated as often as they were drawn."""
    picked = [np.repeat(data[:, groups == h], counts[h].astype(int), axis=1) for h in counts if g in (h, "all")]
    return np.concatenate(picked, axis=1)


@pytest.mark.parametrize("levels", [("interval",), ("ordinal",), ("interval", "ordinal")], ids="+".join)
def test_every_stratified_replicate_is_the_alpha_of_its_resampled_items(monkeypatch, levels):
    """Each replicate (per group and pooled) equals alpha recomputed from scratch on the items
    it drew: checks the feature sums, the per-group pair columns, that chunks of groups of
    different sizes line up, over several chunks, and (both levels) the interval replicates
    taken from the ordinal pair sums."""
    from engine.stats.agreement import ResampleCounts, stratified_replicates

    monkeypatch.setattr(agreement, "_CHUNK_ELEMENTS", 64)  # -> 16 replicates a chunk
    rng = np.random.default_rng(5)
    sizes = {"a": 30, "b": 45, "c": 17}
    groups = np.concatenate([[g] * n for g, n in sizes.items()])
    centre = np.concatenate([np.full(n, 20.0 + 30 * i) for i, n in enumerate(sizes.values())])
    data = np.clip(np.rint(centre + rng.normal(0, 12, (3, groups.size))), 0, 100)
    data[rng.random(data.shape) < 0.15] = np.nan
    n_resamples = 40
    res = stratified_replicates({"m": data}, groups, levels, n_resamples=n_resamples, seed=9, threads=2)
    draws = ResampleCounts(groups, n_resamples, 9)
    counts = {g: np.concatenate([draws.counts(g, k) for k in range(len(draws.starts))], axis=1)
              for g in draws.labels}
    assert draws.chunk == 16 and len(draws.starts) == 3
    for level, g in itertools.product(levels, [*sizes, "all"]):
        alpha, reps, _ = res[("m", level, g)]
        assert alpha == pytest.approx(krippendorff_alpha(data if g == "all" else data[:, groups == g], level))
        for r in (0, 15, 16, 39):
            one = {h: c[:, r] for h, c in counts.items()}
            assert reps[r] == pytest.approx(krippendorff_alpha(_resampled(data, groups, one, g), level), abs=1e-9)
