"""Inter-rater agreement: Krippendorff's alpha (with a bootstrap CI) and weighted kappa.

Data orientation follows the ``krippendorff`` package: **raters × items**, NaN where a
rater gave no rating. (``engine.stats.panel_scores`` takes the transpose, answers ×
judges; pass ``matrix.T`` here.)

Krippendorff's alpha = 1 - D_o / D_e from the coincidence matrix of *pairable* values
(items rated by at least 2 raters; items with one rating carry no information). The
point estimate comes from ``krippendorff.alpha`` when that is cheap (the package
materialises an items × V × V array, V = distinct values) and otherwise from the
same formulas computed here in O(items × raters²); the tests check both agree.

alpha is NaN (never an exception) when it is undefined: no item has 2 or more
ratings, or all pairable ratings are one single value (no variation, D_e = 0).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine.stats import percentile_interval

__all__ = ["LEVELS", "alpha_with_ci", "krippendorff_alpha", "stratified_alphas", "weighted_kappa"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")

# Use krippendorff.alpha for the point estimate when items * V**2 is at most this.
_PACKAGE_MAX_CELLS = 2_000_000
# Group identical items and draw multinomial counts of item types when types * 32 <= items.
_TYPES_FACTOR = 32
_CHUNK_ELEMENTS = 250_000


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")


class _Pairable:
    """Items with >= 2 ratings, as sorted value codes: ``key`` is items × raters, each
    row's codes ascending with ``V`` (= missing) last; ``values`` the V distinct values."""

    def __init__(self, data) -> None:
        x = np.asarray(data, dtype=float)
        if x.ndim != 2:
            raise ValueError(f"expected raters × items (2-D), got shape {x.shape}")
        if np.isinf(x).any():
            raise ValueError("infinite ratings (use NaN for missing)")
        x = x.T  # items × raters
        present = ~np.isnan(x)
        keep = present.sum(axis=1) >= 2
        self.keep = keep  # which of the given items are pairable
        x, present = x[keep], present[keep]
        self.raw = x.T  # raters × pairable items, for krippendorff.alpha
        self.values = np.unique(x[present])
        v = self.values.size
        key = np.full(x.shape, v, dtype=np.int64)
        key[present] = np.searchsorted(self.values, x[present])
        key.sort(axis=1)
        self.key = key
        self.n_items = int(key.shape[0])
        self.v = v

    @property
    def defined(self) -> bool:
        return self.n_items > 0 and self.v >= 2


class _Features:
    """Per-row (item or item type) additive features whose column sums determine alpha.

    ``matrix``: rows × features, dense or scipy.sparse CSR when it would be wide.
    interval: [D_o contribution, m, Σv, Σv²] with v centred (interval distances are
    shift-invariant; centring avoids cancellation); nominal / ratio: [D_o contribution,
    value counts (V)]; ordinal: one column per *unordered* pair of value codes (a ≤ b)
    that occurs, holding Σ 1/(m-1) over the item's rater pairs with those values —
    half the entries of the V × V coincidence matrix, and only the pairs that occur
    (``pair_a``, ``pair_b``); that is what makes 0-100 scales affordable.
    """

    def __init__(self, key: np.ndarray, values: np.ndarray, level: str) -> None:
        self.values, self.level = values, level
        self.pair_a = self.pair_b = None
        t, r = key.shape
        v = values.size
        present = key < v
        m = present.sum(axis=1).astype(float)
        w = 1.0 / (m - 1.0)  # every row has m >= 2
        safe = np.where(present, key, 0)

        if level == "interval":
            centre = values.mean()
            vals = np.where(present, (values - centre)[safe], 0.0)
            s1 = vals.sum(axis=1)
            s2 = (vals * vals).sum(axis=1)
            # Σ_{i≠j} (v_i - v_j)² = 2 m Σ (v_i - mean)²
            dev = np.where(present, vals - (s1 / m)[:, None], 0.0)
            do = 2.0 * m * (dev * dev).sum(axis=1) * w
            self.matrix = np.column_stack([do, m, s1, s2])
            return

        rows_list, cols_list, data_list = [], [], []
        dense_head = None
        if level in ("nominal", "ratio"):
            do = np.zeros(t)
            for i in range(r):
                for j in range(i + 1, r):
                    both = present[:, i] & present[:, j]
                    if not both.any():
                        continue
                    ci, cj = safe[:, i], safe[:, j]
                    if level == "nominal":
                        dist = (ci != cj).astype(float)
                    else:
                        a, b = values[ci], values[cj]
                        s = a + b
                        dist = np.divide(a - b, s, out=np.zeros(t), where=s != 0) ** 2
                    do += np.where(both, 2.0 * dist * w, 0.0)  # ordered pairs: (i,j) and (j,i)
            rows, cols = np.nonzero(present)
            rows_list.append(rows)
            cols_list.append(key[rows, cols] + 1)
            data_list.append(np.ones(rows.size))
            width = v + 1
            dense_head = do
        else:  # ordinal; rows of key are sorted, so key[:, i] <= key[:, j] for i < j
            for i in range(r):
                for j in range(i + 1, r):
                    both = np.nonzero(present[:, i] & present[:, j])[0]
                    if both.size == 0:
                        continue
                    rows_list.append(both)
                    cols_list.append(key[both, i] * v + key[both, j])
                    data_list.append(w[both])
            codes, inverse = np.unique(np.concatenate(cols_list), return_inverse=True)
            self.pair_a, self.pair_b = codes // v, codes % v
            cols_list = [inverse.reshape(-1)]
            width = codes.size

        rows = np.concatenate(rows_list)
        cols = np.concatenate(cols_list)
        data = np.concatenate(data_list)
        if t * width <= 4 * _CHUNK_ELEMENTS:
            f = np.bincount(rows * width + cols, weights=data, minlength=t * width).reshape(t, width)
            if dense_head is not None:
                f[:, 0] = dense_head
            self.matrix = f
            return
        from scipy import sparse

        if dense_head is not None:
            rows = np.concatenate([np.arange(t), rows])
            cols = np.concatenate([np.zeros(t, dtype=np.int64), cols])
            data = np.concatenate([dense_head, data])
        self.matrix = sparse.csr_matrix((data, (rows, cols)), shape=(t, width))

    @property
    def dense(self) -> bool:
        return isinstance(self.matrix, np.ndarray)

    def rows(self, idx: np.ndarray) -> "_Features":
        sub = object.__new__(_Features)
        sub.__dict__.update(self.__dict__)
        sub.matrix = self.matrix[idx]
        return sub

    def weighted_sums(self, w: np.ndarray) -> np.ndarray:
        """``w @ matrix`` for weights w (replicates × rows)."""
        return w @ self.matrix if self.dense else np.asarray((self.matrix.T @ w.T).T)

    def total(self) -> np.ndarray:
        return np.asarray(self.matrix.sum(axis=0)).reshape(1, -1)

    def _value_counts(self, s: np.ndarray) -> np.ndarray:
        """Ordinal: each value's pairable count n_c = Σ_k o_ck from pair sums (resamples × pairs)."""
        from scipy import sparse

        if getattr(self, "_incidence", None) is None:
            p = self.pair_a.size
            # pair -> its two values (a == b: that value twice, since o[a, a] = 2 u)
            self._incidence = sparse.csr_matrix(
                (np.ones(2 * p), (np.tile(np.arange(p), 2), np.concatenate([self.pair_a, self.pair_b]))),
                shape=(p, self.values.size))
        return np.asarray((self._incidence.T @ s.T).T)

    def alphas(self, s: np.ndarray) -> np.ndarray:
        """alpha for each row of summed features ``s`` (resamples × features); NaN where
        D_e = 0."""
        values, level = self.values, self.level
        v = values.size
        with np.errstate(divide="ignore", invalid="ignore"):
            if level == "interval":
                do, n, s1, s2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
                de_num = 2.0 * (n * s2 - s1 * s1)  # Σ_ck n_c n_k (v_c - v_k)²
                scale = n * s2 + s1 * s1
            elif level == "nominal":
                do, nv = s[:, 0], s[:, 1:]
                n = nv.sum(axis=1)
                de_num = n * n - (nv * nv).sum(axis=1)
                scale = n * n
            elif level == "ratio":
                do, nv = s[:, 0], s[:, 1:]
                n = nv.sum(axis=1)
                a, b = values[:, None], values[None, :]
                tot = a + b
                d = np.divide(a - b, tot, out=np.zeros((v, v)), where=tot != 0) ** 2
                de_num = ((nv @ d) * nv).sum(axis=1)
                scale = n * n * d.max()
            else:  # ordinal: distance (M_k - M_c)² with M the mid-cumulative counts
                # the unordered pair (a, b) stands for o[a, b] + o[b, a] = 2 u (a == b: o[a, a] = 2 u)
                pa, pb = self.pair_a, self.pair_b
                nv = self._value_counts(s)
                n = nv.sum(axis=1)
                mid = np.cumsum(nv, axis=1) - nv / 2.0
                sum_m2 = (nv * mid * mid).sum(axis=1)
                sum_m = (nv * mid).sum(axis=1)
                cross = 2.0 * (s * mid[:, pa] * mid[:, pb]).sum(axis=1)  # Σ_ck o_ck M_c M_k
                do = 2.0 * sum_m2 - 2.0 * cross
                de_num = 2.0 * (n * sum_m2 - sum_m * sum_m)
                scale = n * sum_m2 + sum_m * sum_m
            alpha = 1.0 - (n - 1.0) * do / de_num
        # D_e = 0 (no variation among the pairable values): alpha is undefined. The
        # relative tolerance absorbs rounding residues of the closed forms.
        return np.where(de_num > 1e-12 * scale, alpha, np.nan)


def _own_alpha(p: _Pairable, level: str) -> float:
    f = _Features(p.key, p.values, level)
    return float(f.alphas(f.total())[0])


def krippendorff_alpha(data, level: str) -> float:
    """Krippendorff's alpha of ``data`` (raters × items, NaN = missing).

    ``level``: "nominal", "ordinal", "interval" or "ratio". Returns NaN when alpha is
    undefined: no item rated by 2 or more raters, or no variation among the pairable
    ratings (every pairable rating the same value). Perfect agreement on at least two
    distinct values gives 1.0.
    """
    _check_level(level)
    return _point_alpha(_Pairable(data), level)


def _item_types(p: _Pairable) -> tuple[np.ndarray, np.ndarray]:
    """Distinct item rating patterns (rows of ``p.key``) and how many items have each."""
    base = p.v + 1
    r = p.key.shape[1]
    if r * np.log2(base) < 62:  # encode each row as one integer: a 1-D unique is much faster
        codes = p.key @ (base ** np.arange(r, dtype=np.int64))
        _, first, counts = np.unique(codes, return_index=True, return_counts=True)
        return p.key[first], counts
    return np.unique(p.key, axis=0, return_counts=True)


def _point_alpha(p: _Pairable, level: str) -> float:
    if not p.defined:
        return float("nan")
    if p.n_items * p.v * p.v <= _PACKAGE_MAX_CELLS:
        import krippendorff

        with np.errstate(divide="ignore", invalid="ignore"):  # D_e = 0 -> NaN, quietly
            return float(krippendorff.alpha(reliability_data=p.raw, level_of_measurement=level))
    return _own_alpha(p, level)


def alpha_with_ci(data, level: str, n_resamples: int = 1000, seed=0,
                  ci: float = 0.95) -> tuple[float, float, float, int]:
    """Krippendorff's alpha with a percentile-bootstrap CI over items.

    Returns ``(alpha, low, high, n_items)``; ``n_items`` counts the items with 2 or more
    ratings, the only ones resampled (the others do not enter alpha). Each replicate
    draws ``n_items`` items with replacement and recomputes alpha exactly (coincidences
    and expected disagreement from the resampled items). Replicates in which alpha is
    undefined (no variation) are left out of the percentiles. When many items share
    the same rating pattern (binary or Likert labels) the item-pattern counts are drawn
    as one multinomial per replicate, which is the same distribution, only faster.
    Undefined alpha -> ``(nan, nan, nan, n_items)``.
    """
    _check_level(level)
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    p = _Pairable(data)
    alpha = _point_alpha(p, level)
    if not p.defined or np.isnan(alpha):
        return alpha, float("nan"), float("nan"), p.n_items
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = p.n_items
    types, counts = _item_types(p)
    use_types = types.shape[0] * _TYPES_FACTOR <= n
    rows_key = types if use_types else p.key
    f = _Features(rows_key, p.values, level)
    t = rows_key.shape[0]
    boot = np.empty(n_resamples)
    chunk = max(1, _CHUNK_ELEMENTS // t)
    if not f.dense:
        chunk = max(chunk, 16)  # sparse products amortise better over more replicates
    for s in range(0, n_resamples, chunk):
        e = min(n_resamples, s + chunk)
        c = e - s
        if use_types:
            w = rng.multinomial(n, counts / n, size=c).astype(float)
        else:
            idx = rng.integers(0, n, size=(c, n))
            idx += (np.arange(c) * n)[:, None]
            w = np.bincount(idx.ravel(), minlength=c * n).reshape(c, n).astype(float)
        boot[s:e] = f.alphas(f.weighted_sums(w))
    low, high = percentile_interval(boot, ci)
    return alpha, low, high, n


def weighted_kappa(a, b, weights: str | None = "quadratic", labels=None) -> float:
    """Cohen's kappa between two raters' paired ratings, optionally weighted.

    ``weights``: "quadratic" (default), "linear" or None (unweighted Cohen's kappa).
    Disagreement weights use category *positions* in ``labels`` (like sklearn):
    ``|i - j|`` (linear) or ``(i - j)²`` (quadratic), unweighted ``[i != j]``;
    kappa = 1 - Σ w·O / Σ w·E with O the observed and E the chance (product of
    marginals) proportions. ``labels`` (ordered categories) defaults to the sorted
    distinct values in either rater; a value outside ``labels`` is an error. Pairs with
    a NaN on either side are dropped. NaN when no pairs remain or chance disagreement
    is 0 (e.g. both raters used one single category throughout).
    """
    if weights not in ("quadratic", "linear", None):
        raise ValueError(f"weights must be 'quadratic', 'linear' or None, got {weights!r}")
    x = np.asarray(a, dtype=float).reshape(-1)
    y = np.asarray(b, dtype=float).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"a has {x.size} ratings, b {y.size}: they must be paired")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size == 0:
        return float("nan")
    if labels is None:
        lab = np.unique(np.concatenate([x, y]))
    else:
        lab = np.asarray(labels, dtype=float).reshape(-1)
        if np.unique(lab).size != lab.size:
            raise ValueError("labels must be distinct")
    k = lab.size
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]

    def codes(z: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_lab, z), 0, k - 1)
        if not (sorted_lab[pos] == z).all():
            bad = z[sorted_lab[pos] != z][0]
            raise ValueError(f"rating {bad!r} is not in labels")
        return order[pos]

    cx, cy = codes(x), codes(y)
    obs = np.bincount(cx * k + cy, minlength=k * k).reshape(k, k) / x.size
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    i = np.arange(k)
    diff = np.abs(i[:, None] - i[None, :]).astype(float)
    if weights is None:
        wmat = (diff > 0).astype(float)
    elif weights == "linear":
        wmat = diff
    else:
        wmat = diff * diff
    denom = (wmat * exp).sum()
    if denom <= 0:
        return float("nan")
    return float(1.0 - (wmat * obs).sum() / denom)


def stratified_alphas(datas: dict[str, np.ndarray], groups: np.ndarray, levels=("interval", "ordinal"),
                      n_resamples: int = 1000, seed=0, ci: float = 0.95,
                      threads: int | None = None) -> dict[tuple[str, str, object], tuple]:
    """Alpha per group and over all items, for several datasets on the same items, with CIs
    from one stratified bootstrap.

    ``datas``: name -> raters × items (the same items, e.g. one matrix per metric);
    ``groups``: a label per item (e.g. the condition). Returns
    ``{(name, level, group or "all"): (alpha, low, high, n_items)}``.

    Each replicate resamples items with replacement *within every group*; the same draw
    serves every dataset and level (the draw is over items, whatever is measured on them).
    A group's replicate alpha comes from its resampled items; the pooled ("all") replicate
    from the sum of every group's features — a bootstrap stratified by group, exact for
    the alpha's additive features, at no extra cost. Point estimates are the closed forms
    of :func:`krippendorff_alpha`'s own path (equal to the package's to rounding). Items
    with fewer than 2 ratings in a dataset carry no features there. Replicates with
    undefined alpha are left out of the percentiles.

    Groups are bootstrapped in ``threads`` threads (default: the CPUs, at most 4); each
    group has its own generator spawned from ``seed``, so the result does not depend on
    the number of threads.
    """
    for level in levels:
        _check_level(level)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    groups = np.asarray(groups)
    labels = list(dict.fromkeys(groups.tolist()))
    members = {g: np.nonzero(groups == g)[0] for g in labels}
    plans = []  # (name, level, pairable, features of all items, {group: (features, positions)})
    for name, data in datas.items():
        p_all = _Pairable(np.asarray(data, dtype=float))
        kept = np.nonzero(p_all.keep)[0]
        item_group = groups[p_all.keep]
        for level in levels:
            per: dict[object, tuple[_Features, np.ndarray]] = {}
            f_all = _Features(p_all.key, p_all.values, level) if p_all.defined else None
            if f_all is not None:
                for g in labels:
                    rows = np.nonzero(item_group == g)[0]
                    if rows.size:  # positions of the group's pairable items among its members
                        per[g] = (f_all.rows(rows), np.searchsorted(members[g], kept[rows]))
            plans.append((name, level, p_all, f_all, per))

    totals: dict[tuple[str, str], np.ndarray] = {}
    boots: dict[tuple[str, str, object], np.ndarray] = {}
    lock = threading.Lock()

    def run_group(g: object, g_rng: np.random.Generator) -> None:
        n_g = members[g].size
        chunk = max(16, _CHUNK_ELEMENTS // max(1, n_g))
        mine = {(name, level): np.empty(n_resamples) for name, level, _, _, per in plans if g in per}
        for start in range(0, n_resamples, chunk):
            c = min(n_resamples, start + chunk) - start
            # int32 draws are ~1.7x faster than int64; c * n_g stays far below 2**31 by the chunking
            idx = g_rng.integers(0, n_g, size=(c, n_g), dtype=np.int32)
            idx *= c  # counts laid out items × replicates, so w.T is C-contiguous for sparse products
            idx += np.arange(c, dtype=np.int32)[:, None]
            w = np.bincount(idx.ravel(), minlength=c * n_g).reshape(n_g, c).astype(float).T
            for name, level, _, f_all, per in plans:
                if g not in per:
                    continue
                f, pos = per[g]
                sums = f.weighted_sums(w if pos.size == n_g else w.T[pos].T)
                mine[(name, level)][start:start + c] = f.alphas(sums)
                with lock:
                    tot = totals.get((name, level))
                    if tot is None:
                        totals[(name, level)] = tot = np.zeros((n_resamples, sums.shape[1]))
                    tot[start:start + c] += sums
        with lock:
            for (name, level), reps in mine.items():
                boots[(name, level, g)] = reps

    workers = threads or min(4, os.cpu_count() or 1)
    g_rngs = rng.spawn(len(labels))
    if workers > 1 and len(labels) > 1:
        with ThreadPoolExecutor(workers) as pool:  # numpy's draws and products release the GIL
            list(pool.map(run_group, labels, g_rngs))
    else:
        for g, g_rng in zip(labels, g_rngs):
            run_group(g, g_rng)

    out: dict[tuple[str, str, object], tuple] = {}
    for name, level, p_all, f_all, per in plans:
        for g in [*labels, "all"]:
            if g == "all":
                n_items = p_all.n_items
                alpha = float(f_all.alphas(f_all.total())[0]) if f_all is not None else float("nan")
                reps = f_all.alphas(totals[(name, level)]) if (name, level) in totals else None
            else:
                n_items = int(per[g][0].matrix.shape[0]) if g in per else 0
                alpha = float(per[g][0].alphas(per[g][0].total())[0]) if g in per else float("nan")
                reps = boots.get((name, level, g))
            if reps is None or np.isnan(alpha):
                out[(name, level, g)] = (alpha, float("nan"), float("nan"), n_items)
            else:
                low, high = percentile_interval(reps, ci)
                out[(name, level, g)] = (alpha, low, high, n_items)
    return out
