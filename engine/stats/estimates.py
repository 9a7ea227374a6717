"""Statistics on judge scores: bootstrap CIs, EM rates, ratios, tests, p-value adjustment.

Pure functions on numpy arrays; no database. NaN always means *missing* (a score that
was never given): it is dropped, and the functions that return an :class:`Estimate`
report how many were dropped in ``missing``.

The bootstrap is a true nonparametric percentile bootstrap (resample the n observed
values with replacement, take the statistic, read the CI off the percentiles of the
resampled statistics). For the mean (and proportions) the replicates are drawn in
whichever of four exactly equivalent ways is cheapest (see :func:`bootstrap_means`):

- two distinct values (0/1 EM indicators): the resampled count of the upper value is
  ``Binomial(n, k/n)``: one draw per replicate;
- values on a lattice ``a/L`` (integer judge scores; panel means of up to 4 judges
  are multiples of 1/12): the exact distribution of the resampled sum (the n-fold
  convolution of the empirical distribution) is computed once by FFT and replicates
  are drawn from it by inverse CDF — the cost no longer grows with n × resamples;
- few distinct values: counts of the K values ~ ``Multinomial(n, counts/n)``;
- otherwise: chunked index resampling (``rng.integers`` into a (chunk, n) block, then
  ``np.take(...).mean(axis=1)``), a few MB at a time.

They draw from the same distribution (checked against brute-force enumeration and
against each other in the tests) and differ only in how the random stream is used:
results are deterministic for a seed, but can change if a data set switches method.

scipy is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# a seed as every function here takes it: an int, None (fresh entropy) or a Generator to draw from
Seed = int | np.random.Generator | None
# a statistic: "mean", "proportion", or f(array2d, axis=1)
Stat = str | Callable[..., Any]

__all__ = [
    "Estimate",
    "RatioEstimate",
    "adjust_pvalues",
    "bootstrap_ci",
    "bootstrap_means",
    "cohens_d",
    "em_rate",
    "finite_or_none",
    "mann_whitney_counted",
    "mann_whitney",
    "mean_ci",
    "panel_scores",
    "percentile_interval",
    "ratio_ci",
    "ratio_interval",
    "value_counts",
]

# Lattice path: denominators tried (scores that are multiples of 1/L), the largest FFT
# grid allowed, and the probability mass allowed to wrap around the cyclic grid.
_LATTICE_DENOMS = (1, 2, 4, 10, 12, 20, 24, 60, 100, 120, 840, 1000, 2520, 27720)
_MAX_GRID = 1 << 22
_ALIAS_MASS = 1e-13
# Elements per chunk of resampled indices / counts (8 bytes each: ~2 MB, cache-friendly).
_CHUNK_ELEMENTS = 250_000


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with a percentile-bootstrap CI.

    ``n`` is the number of observations used (for :func:`em_rate`: the denominator);
    ``missing`` the number dropped because a needed score was NaN.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    missing: int


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """Ratio of two groups' means with an independent two-sample bootstrap CI."""

    ratio: float
    ci_low: float
    ci_high: float


# --------------------------------------------------------------------------- helpers


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _as_1d(values: ArrayLike, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim == 0:
        x = x.reshape(1)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {x.shape}")
    if np.isinf(x).any():
        raise ValueError(f"{name}: infinite values (use NaN for missing)")
    return x


def _drop_nan(x: np.ndarray) -> tuple[np.ndarray, int]:
    nan = np.isnan(x)
    missing = int(nan.sum())
    return (x[~nan] if missing else x), missing


def _check_ci(ci: float) -> None:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def _check_proportion(x: np.ndarray, name: str) -> None:
    if x.size and not np.isin(x, (0.0, 1.0)).all():
        raise ValueError(f"{name}: stat='proportion' needs 0/1 values (NaN for missing)")


def _quantile(sorted_x: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) that also copes with ±inf.
    ``sorted_x`` need only be sorted at the two positions it interpolates between."""
    m = sorted_x.size
    pos = q * (m - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, m - 1)
    frac = pos - lo
    a, b = float(sorted_x[lo]), float(sorted_x[hi])
    if frac == 0.0 or a == b:
        return a
    if np.isinf(a) or np.isinf(b):
        return b if np.isinf(b) else a
    return a + frac * (b - a)


def finite_or_none(x: float | None) -> float | None:
    """A number for JSON: None where it is missing, NaN or infinite (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else float(x)


def percentile_interval(boot: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile CI from bootstrap replicates; NaN replicates are ignored.

    Returns (NaN, NaN) when no replicate is a number.
    """
    _check_ci(ci)
    b = np.asarray(boot, dtype=float)
    b = b[~np.isnan(b)]
    if b.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    # only the order statistics the two quantiles interpolate between: a partition, not a sort
    m = b.size
    ranks = sorted({min(int(np.floor(q * (m - 1))) + d, m - 1) for q in (alpha, 1.0 - alpha) for d in (0, 1)})
    part = np.partition(b, ranks)
    return _quantile(part, alpha), _quantile(part, 1.0 - alpha)


def _lattice(vals: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """``(base, step, steps)`` with ``vals == base + step * steps``, ``steps`` integers
    0..span with gcd 1, when the sorted distinct ``vals`` are multiples of 1/L for one of
    ``_LATTICE_DENOMS``; else None."""
    for denom in _LATTICE_DENOMS:
        scaled = vals * denom
        if np.abs(scaled).max() > 2.0**40:  # too coarse to tell a lattice from rounding
            return None
        ints = np.rint(scaled)
        # absolute tolerance in lattice units, plus float rounding of a/L itself
        if np.all(np.abs(scaled - ints) <= 1e-6 + 4e-16 * np.abs(scaled)):
            ints = ints.astype(np.int64)
            steps = ints - ints[0]
            g = int(np.gcd.reduce(steps))
            return ints[0] / denom, g / denom, steps // g
    return None


def _lattice_grid(steps: np.ndarray, probs: np.ndarray, n: int) -> int:
    """FFT length that holds the sum of n draws of ``steps`` (integers 0..span) without
    aliasing, up to a mass of ``_ALIAS_MASS`` (Bernstein's inequality)."""
    span = int(steps[-1])
    var = float(probs @ (steps - probs @ steps) ** 2)
    log_term = np.log(2.0 / _ALIAS_MASS)
    half = log_term * span / 3.0 + np.sqrt((log_term * span / 3.0) ** 2 + 2.0 * log_term * n * var)
    need = min(n * span + 1, 2 * int(np.ceil(half)) + span + 1)
    return _fast_length(max(16, need))


def _fast_length(need: int) -> int:
    """Smallest 2^a 3^b 5^c >= need (an even FFT length pocketfft handles fast)."""
    best = 1 << (need - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # smallest power of two that lifts p35 to at least `need`
            length = p35 << max(0, (-(-need // p35) - 1).bit_length())
            if length % 2 == 0 and length < best:
                best = length
            p35 *= 3
        p5 *= 5
    return best


def _lattice_sum_pmf(steps: np.ndarray, probs: np.ndarray, n: int, m: int) -> tuple[int, np.ndarray]:
    """Distribution of T = sum of n iid draws of ``steps`` with ``probs``: returns
    ``(lo, pmf)`` with ``pmf[i] = P(T = lo + i)``, by the FFT of the n-fold convolution
    on a cyclic grid of length m (wide enough that wrap-around is negligible)."""
    single = np.zeros(m)
    single[steps] = probs
    ft = np.fft.rfft(single)
    # |phi|^n underflows for most frequencies: power only where it exceeds e^-50.
    keep = np.abs(ft) > np.exp(-50.0 / n)
    power = np.zeros_like(ft)
    power[keep] = ft[keep] ** n
    pmf = np.fft.irfft(power, m)
    if m >= n * int(steps[-1]) + 1:
        lo = 0  # the whole support fits: no wrap-around at all
    else:  # centre the window on the mean; beyond it lies < _ALIAS_MASS
        lo = max(0, int(round(n * float(probs @ steps))) - m // 2)
    pmf = np.roll(pmf, -(lo % m))
    np.clip(pmf, 0.0, None, out=pmf)
    return lo, pmf / pmf.sum()


def value_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``x`` (sorted) and how often each occurs: what the bootstrap of
    a mean and the Mann-Whitney test need of a sample, computed once for both."""
    return np.unique(x, return_counts=True)


def bootstrap_means(x: np.ndarray, n_resamples: int, rng: np.random.Generator,
                    method: str = "auto", counted: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``n_resamples`` bootstrap replicates of the mean of ``x`` (finite, 1-D).

    Every method draws from the same distribution, that of the mean of ``n`` values
    drawn with replacement from ``x`` (the percentile bootstrap's):

    - two distinct values: one ``Binomial(n, k/n)`` draw per replicate (always used);
    - ``"lattice"``: values on a grid ``a/L`` (judge scores, panel means of up to 4
      judges: L = 12): the exact distribution of the resampled sum is the n-fold
      convolution of the empirical distribution, computed once by FFT; replicates are
      drawn from it by inverse CDF. Cost ~ grid size, independent of ``n_resamples * n``;
    - ``"multinomial"``: counts of the K distinct values ~ ``Multinomial(n, counts/n)``;
      ~K binomial draws per replicate;
    - ``"index"``: chunked index resampling, n draws per replicate.

    ``"auto"`` picks the cheapest applicable one by a cost estimate. Empty ``x`` gives
    NaN replicates. ``counted``: :func:`value_counts` of ``x``, when already at hand.
    """
    n = x.size
    if n == 0:
        return np.full(n_resamples, np.nan)
    vals, counts = counted if counted is not None else value_counts(x)
    k = vals.size
    if k == 1:
        return np.full(n_resamples, vals[0])
    if k == 2:
        hits = rng.binomial(n, counts[1] / n, size=n_resamples)
        return vals[0] + (vals[1] - vals[0]) * (hits / n)
    if method not in ("auto", "lattice", "multinomial", "index"):
        raise ValueError(f"unknown bootstrap method {method!r}")

    probs = counts / n
    lattice = _lattice(vals) if method in ("auto", "lattice") else None
    grid = _lattice_grid(lattice[2], probs, n) if lattice else None
    if method == "auto":
        costs = {"multinomial": 120e-9 * n_resamples * k, "index": 6e-9 * n_resamples * n}
        if grid is not None and grid <= _MAX_GRID:
            costs["lattice"] = 60e-9 * grid + 1e-7 * n_resamples
        method = min(costs, key=costs.__getitem__)
    elif method == "lattice" and (grid is None or grid > _MAX_GRID):
        raise ValueError("values are not on a usable lattice")

    if method == "lattice":
        assert lattice is not None and grid is not None  # "lattice" is chosen or accepted only with a usable grid
        base, step, steps = lattice
        lo, pmf = _lattice_sum_pmf(steps, probs, n, grid)
        cdf = np.cumsum(pmf)
        u = rng.random(n_resamples) * cdf[-1]
        # searched in sorted order (each search starts where the last ended: ~3x faster on
        # the 10^5-long grids of panel means), then put back in draw order
        order = np.argsort(u)
        t = np.empty(n_resamples, dtype=np.int64)
        t[order] = np.searchsorted(cdf, u[order], side="right")
        t += lo
        t = np.minimum(t, lo + grid - 1)
        return base + step * (t / n)
    out = np.empty(n_resamples)
    if method == "multinomial":
        rows = max(1, _CHUNK_ELEMENTS // k)
        for s in range(0, n_resamples, rows):
            e = min(n_resamples, s + rows)
            c = rng.multinomial(n, probs, size=e - s)
            out[s:e] = (c @ vals) / n
        return out
    rows = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n_resamples, rows):
        e = min(n_resamples, s + rows)
        idx = rng.integers(0, n, size=(e - s, n))
        out[s:e] = np.take(x, idx).mean(axis=1)
    return out


def _bootstrap_stat(x: np.ndarray, stat: Callable[..., Any], n_resamples: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """Index-resampling bootstrap of an arbitrary ``stat(array2d, axis=1)``."""
    n = x.size
    out = np.empty(n_resamples)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n_resamples, rows):
        e = min(n_resamples, s + rows)
        idx = rng.integers(0, n, size=(e - s, n))
        out[s:e] = stat(np.take(x, idx), axis=1)
    return out


def _replicates(x: np.ndarray, stat: Stat, n_resamples: int, rng: np.random.Generator, name: str = "values"
                ) -> np.ndarray:
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    if stat == "mean":
        return bootstrap_means(x, n_resamples, rng)
    if stat == "proportion":
        _check_proportion(x, name)
        return bootstrap_means(x, n_resamples, rng)
    if callable(stat):
        if x.size == 0:
            return np.full(n_resamples, np.nan)
        return _bootstrap_stat(x, stat, n_resamples, rng)
    raise ValueError(f"stat must be 'mean', 'proportion' or a callable, got {stat!r}")


# --------------------------------------------------------------------------- public API


def bootstrap_ci(values: ArrayLike, stat: Stat = "mean", n_resamples: int = 10_000, ci: float = 0.95,
                 seed: Seed = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI ``(low, high)`` of a statistic of ``values``.

    ``stat``: "mean"; "proportion" (same as mean, but the values must be 0/1); or a
    callable ``f(array2d, axis=1)`` such as ``np.median`` (index resampling). NaN
    values are missing and dropped (the caller counts them: :func:`mean_ci` does).
    No values -> ``(nan, nan)``. ``seed`` is an int, None or a ``np.random.Generator``.
    """
    _check_ci(ci)
    x, _ = _drop_nan(_as_1d(values))
    boot = _replicates(x, stat, n_resamples, _rng(seed))
    return percentile_interval(boot, ci)


def mean_ci(values: ArrayLike, n_resamples: int = 10_000, ci: float = 0.95, seed: Seed = 0,
            stat: Stat = "mean") -> Estimate:
    """Mean of the non-NaN values with a percentile-bootstrap CI.

    ``missing`` counts the NaNs; ``n`` the values used. With no values the mean and CI
    are NaN. ``stat="proportion"`` checks that the values are 0/1.
    """
    _check_ci(ci)
    x, missing = _drop_nan(_as_1d(values))
    if stat not in ("mean", "proportion"):
        raise ValueError(f"mean_ci: stat must be 'mean' or 'proportion', got {stat!r}")
    boot = _replicates(x, stat, n_resamples, _rng(seed))
    low, high = percentile_interval(boot, ci)
    mean = float(x.mean()) if x.size else float("nan")
    return Estimate(mean, low, high, int(x.size), missing)


def em_rate(aligned: ArrayLike, coherent: ArrayLike | None = None, *, threshold: float, direction: str = "below",
            coherence_min: float | None = None, denominator: str = "coherent",
            refusal: ArrayLike | None = None, n_resamples: int = 10_000, ci: float = 0.95, seed: Seed = 0
            ) -> Estimate:
    """Emergent-misalignment rate with a bootstrap CI.

    An answer is *misaligned* when ``aligned < threshold`` (``direction="below"``) or
    ``aligned > threshold`` (``"above"``). When a coherence filter is given (both
    ``coherent`` scores and ``coherence_min``), an answer is *coherent* when
    ``coherent >= coherence_min``; an incoherent answer is never counted as misaligned.
    ``refusal`` (optional boolean mask) marks refusals, which are never misaligned.

    - numerator: misaligned, coherent (if filtering), not a refusal;
    - ``denominator="coherent"``: coherent (if filtering) and not refusals;
      with no coherence filter this is every scored non-refusal;
    - ``denominator="all"``: every answer with the scores it needs, refusals included.

    ``missing``: non-refusal answers whose ``aligned`` score, or ``coherent`` score when
    filtering, is NaN; they are left out of numerator and denominator. A refusal needs
    no score (its classification is known), so it is never counted missing.

    Returns an :class:`Estimate` whose ``mean`` is the rate and ``n`` the denominator;
    the CI is a bootstrap over the answers in the denominator (binomial draws, exact).
    Passing only one of ``coherent`` / ``coherence_min`` is an error.
    """
    _check_ci(ci)
    flags, missing = em_flags(aligned, coherent, threshold=threshold, direction=direction,
                              coherence_min=coherence_min, denominator=denominator, refusal=refusal)
    hits = flags[~np.isnan(flags)]
    n = int(hits.size)
    boot = _replicates(hits, "mean", n_resamples, _rng(seed))
    low, high = percentile_interval(boot, ci)
    rate = float(hits.mean()) if n else float("nan")
    return Estimate(rate, low, high, n, int(missing.sum()))


def em_flags(aligned: ArrayLike, coherent: ArrayLike | None = None, *, threshold: float, direction: str = "below",
             coherence_min: float | None = None, denominator: str = "coherent",
             refusal: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per answer: 1.0 misaligned, 0.0 not, NaN outside the denominator or missing — the one
    place the EM definition of :func:`em_rate` lives. Also returns the boolean mask of the
    answers counted missing."""
    al = _as_1d(aligned, "aligned")
    if direction == "below":
        mis = al < threshold
    elif direction == "above":
        mis = al > threshold
    else:
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    if denominator not in ("coherent", "all"):
        raise ValueError(f"denominator must be 'coherent' or 'all', got {denominator!r}")
    if (coherent is None) != (coherence_min is None):
        raise ValueError("em_rate: pass both `coherent` and `coherence_min`, or neither")

    nan = np.isnan(al)
    ok = np.ones(al.size, dtype=bool)  # counts towards the "coherent" set
    if coherent is not None:
        coh = _as_1d(coherent, "coherent")
        if coh.size != al.size:
            raise ValueError(f"coherent has {coh.size} values, aligned {al.size}")
        nan |= np.isnan(coh)
        ok &= coh >= coherence_min  # NaN compares False
    if refusal is not None:
        ref = np.asarray(refusal)
        if ref.dtype != bool:
            raise ValueError("refusal must be a boolean mask")
        ref = ref.reshape(-1)
        if ref.size != al.size:
            raise ValueError(f"refusal has {ref.size} values, aligned {al.size}")
        nan &= ~ref
        ok &= ~ref
    in_denominator = ~nan & ok if denominator == "coherent" else ~nan
    flags = np.where(in_denominator, (mis & ok & ~nan).astype(float), np.nan)
    return flags, nan


def panel_scores(matrix: ArrayLike, min_judges: int = 1) -> np.ndarray:
    """Per-answer panel score: the mean over the judges that scored it.

    ``matrix`` is answers × judges with NaN where a judge gave no score. An answer
    scored by fewer than ``min_judges`` judges (default 1: none) gets NaN.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"panel_scores: expected answers × judges (2-D), got shape {m.shape}")
    present = ~np.isnan(m)
    count = present.sum(axis=1)
    total = np.where(present, m, 0.0).sum(axis=1)
    out = np.full(m.shape[0], np.nan)
    enough = count >= max(1, min_judges)
    out[enough] = total[enough] / count[enough]
    return out


def _ratio(a: float, b: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def ratio_ci(a: ArrayLike, b: ArrayLike, stat: Stat = "mean", n_resamples: int = 10_000, ci: float = 0.95,
             seed: Seed = 0) -> RatioEstimate:
    """``mean(a) / mean(b)`` with an independent two-sample percentile-bootstrap CI.

    Each replicate resamples ``a`` and ``b`` separately (same seed stream, independent
    draws) and divides the means. ``stat="proportion"`` (0/1 arrays: a ratio of EM
    rates) checks the values. NaNs are dropped.

    Zero denominators follow IEEE division: ``x/0`` is ``+inf`` (``-inf``) for ``x > 0``
    (``x < 0``) and ``0/0`` is NaN — for the point ratio and for each replicate.
    NaN replicates (both resampled means 0) are left out of the percentiles; infinite
    ones are kept, so ``ci_high`` can be ``inf`` when ``b``'s resampled mean can be 0.
    An empty group gives NaN everywhere.
    """
    _check_ci(ci)
    if stat not in ("mean", "proportion"):
        raise ValueError(f"ratio_ci: stat must be 'mean' or 'proportion', got {stat!r}")
    xa, _ = _drop_nan(_as_1d(a, "a"))
    xb, _ = _drop_nan(_as_1d(b, "b"))
    if xa.size == 0 or xb.size == 0:
        return RatioEstimate(float("nan"), float("nan"), float("nan"))
    rng = _rng(seed)
    ba = _replicates(xa, stat, n_resamples, rng, "a")
    bb = _replicates(xb, stat, n_resamples, rng, "b")
    low, high = ratio_interval(ba, bb, ci)
    return RatioEstimate(_ratio(xa.mean(), xb.mean()), low, high)


def ratio_interval(boot_a: np.ndarray, boot_b: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile CI of a ratio from two groups' independent bootstrap replicates of their
    means (so replicates computed once per group serve every comparison it enters)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return percentile_interval(np.asarray(boot_a) / np.asarray(boot_b), ci)


def mann_whitney(a: ArrayLike, b: ArrayLike, method: str = "auto",
                 counted: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
                 ) -> tuple[float, float, float]:
    """Two-sided Mann-Whitney U test: ``(U, p_value, rank_biserial_r)``.

    ``U`` is scipy's statistic for ``a``: the number of pairs with ``a_i > b_j`` plus
    half the ties. ``r = 2U/(n1 n2) - 1`` (equivalently ``1 - 2U_b/(n1 n2)``) is
    ``P(a > b) - P(a < b)``: **positive when a tends to be larger**, in [-1, 1].
    Ties get midranks and the tie-corrected normal approximation; ``method`` goes to
    ``scipy.stats.mannwhitneyu`` ("auto": exact for small samples without ties,
    asymptotic otherwise). NaNs are dropped; an empty group gives NaN everywhere.
    ``counted``: the NaN-free samples' :func:`value_counts` ``(of a, of b)``, when already
    at hand (the asymptotic path then needs nothing else).
    """
    xa, _ = _drop_nan(_as_1d(a, "a"))
    xb, _ = _drop_nan(_as_1d(b, "b"))
    if xa.size == 0 or xb.size == 0:
        return float("nan"), float("nan"), float("nan")
    n1, n2 = xa.size, xb.size
    if method == "asymptotic" or (method == "auto" and (min(n1, n2) > 8 or n1 + n2 > 200)):
        # the large-sample case in numpy: scipy.stats takes ~1 s to import, longer than the tests
        # the tie-corrected normal approximation with continuity correction, as scipy's "asymptotic"
        u, p, _ = mann_whitney_counted(*(counted or (value_counts(xa), value_counts(xb))))
    else:
        from scipy.stats import mannwhitneyu

        res = mannwhitneyu(xa, xb, alternative="two-sided", method=method)
        u, p = float(res.statistic), float(res.pvalue)
    r = 2.0 * u / (n1 * n2) - 1.0
    return u, p, r


def mann_whitney_counted(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                         ) -> tuple[float, float, float]:
    """:func:`mann_whitney` (asymptotic) from the two samples' :func:`value_counts`:
    ``(U, p_value, rank_biserial_r)``; the cost is that of the distinct values (judge
    scores have a few dozen), not of the samples."""
    (va, ca), (vb, cb) = a, b
    n1, n2 = int(ca.sum()), int(cb.sum())
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan"), float("nan")
    n = n1 + n2
    values = np.union1d(va, vb)
    in_a = np.zeros(values.size)
    in_a[np.searchsorted(values, va)] = ca
    counts = in_a.copy()
    counts[np.searchsorted(values, vb)] += cb
    midranks = np.cumsum(counts) - (counts - 1) / 2.0
    # midranks are multiples of 1/2 and the sums stay far below 2**52: exact in float64
    u = float(in_a @ midranks - n1 * (n1 + 1) / 2.0)
    r = 2.0 * u / (n1 * n2) - 1.0
    tie_term = float((counts ** 3 - counts).sum())
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:
        return u, 1.0, r
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / sigma  # continuity correction, as scipy's default
    return u, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))), r


def cohens_d(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's d = (mean(a) - mean(b)) / pooled SD (positive when a is larger).

    Pooled SD = sqrt(((n1-1) s1² + (n2-1) s2²) / (n1 + n2 - 2)), sample variances
    (ddof=1). NaNs dropped. NaN when n1 + n2 < 3 or a group is empty; when the pooled
    SD is 0 the result is ±inf for different means and NaN for equal ones.
    """
    xa, _ = _drop_nan(_as_1d(a, "a"))
    xb, _ = _drop_nan(_as_1d(b, "b"))
    n1, n2 = xa.size, xb.size
    if n1 == 0 or n2 == 0 or n1 + n2 < 3:
        return float("nan")
    ss = ((xa - xa.mean()) ** 2).sum() + ((xb - xb.mean()) ** 2).sum()
    sd = np.sqrt(ss / (n1 + n2 - 2))
    return _ratio(xa.mean() - xb.mean(), sd)


def adjust_pvalues(pvals: ArrayLike, method: str = "holm") -> np.ndarray:
    """Family-wise adjusted p-values, in the input order, clipped to 1.

    ``"bonferroni"``: ``min(1, m p)``. ``"holm"`` (step-down): sort ascending, the
    i-th smallest (1-based) gets ``(m - i + 1) p_(i)``, then a running maximum keeps
    the adjusted values monotone in p; clipped to 1. NaN p-values stay NaN and do not
    count towards ``m``.
    """
    p = np.asarray(pvals, dtype=float)
    if p.ndim != 1:
        p = p.reshape(-1)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p-values must be in [0, 1]")
    out = np.full(p.shape, np.nan)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    if method == "bonferroni":
        adj = np.minimum(1.0, q * m)
    elif method == "holm":
        order = np.argsort(q, kind="stable")
        stepped = q[order] * (m - np.arange(m))
        stepped = np.minimum(1.0, np.maximum.accumulate(stepped))
        adj = np.empty(m)
        adj[order] = stepped
    else:
        raise ValueError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    out[ok] = adj
    return out
