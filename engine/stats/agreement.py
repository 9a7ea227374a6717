"""Inter-rater agreement: Krippendorff's alpha (with a bootstrap CI) and weighted kappa.

Data orientation follows the ``krippendorff`` package: **raters × items**, NaN where a
rater gave no rating. (``engine.stats.estimates.panel_scores`` takes the transpose, answers ×
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from engine.stats.estimates import Seed, percentile_interval

__all__ = ["LEVELS", "ResampleCounts", "alpha_with_ci", "krippendorff_alpha", "pairwise_kappas", "stratified_alphas",
           "stratified_replicates", "weighted_kappa"]

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

    def __init__(self, data: ArrayLike) -> None:
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

    # scipy is untyped: a sparse matrix, and what is made from one, is Any here
    matrix: Any  # np.ndarray, or a scipy.sparse CSR matrix
    pair_a: Any  # ordinal: np.ndarray of value codes; None otherwise
    pair_b: Any
    _incidence: Any
    _transposed: Any
    _spread: np.ndarray | None

    def __init__(self, key: np.ndarray, values: np.ndarray, level: str) -> None:
        self.values, self.level = values, level
        self.pair_a = self.pair_b = self._incidence = self._transposed = self._spread = None
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

        rows_list: list[np.ndarray] = []
        cols_list: list[np.ndarray] = []
        data_list: list[np.ndarray] = []
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
                    pair_rows = np.nonzero(present[:, i] & present[:, j])[0]
                    if pair_rows.size == 0:
                        continue
                    rows_list.append(pair_rows)
                    cols_list.append(key[pair_rows, i] * v + key[pair_rows, j])
                    data_list.append(w[pair_rows])
            all_codes = np.concatenate(cols_list)
            if v * v <= 4 * _CHUNK_ELEMENTS:  # 0-100 scales: a lookup table, no sort
                seen = np.flatnonzero(np.bincount(all_codes, minlength=v * v))
                column = np.zeros(v * v, dtype=np.int64)
                column[seen] = np.arange(seen.size)
                codes, inverse = seen, column[all_codes]
            else:
                codes, inverse = np.unique(all_codes, return_inverse=True)
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

    def _with(self, matrix: Any) -> _Features:
        sub = object.__new__(_Features)
        sub.__dict__.update(self.__dict__)
        sub.matrix, sub._incidence, sub._transposed, sub._spread = matrix, None, None, None
        return sub

    def rows(self, idx: np.ndarray) -> _Features:
        return self._with(self.matrix[idx])

    def compact(self) -> tuple[_Features, np.ndarray | None]:
        """Ordinal features keep only the value pairs that occur in these rows (a group of
        items uses a fraction of the pairs of all items, and every replicate's cost is per
        pair); returns them and the kept columns' positions among this one's (None: all)."""
        if self.level != "ordinal" or self.dense:
            return self, None
        cols = np.flatnonzero(np.bincount(self.matrix.indices, minlength=self.matrix.shape[1]))
        if cols.size == self.matrix.shape[1]:
            return self, None
        sub = self._with(self.matrix[:, cols])
        sub.pair_a, sub.pair_b = self.pair_a[cols], self.pair_b[cols]
        return sub, cols

    def weighted_sums(self, w_t: np.ndarray) -> np.ndarray:
        """Feature sums per replicate, features × replicates, for weights ``w_t`` (rows ×
        replicates). Sparse products want ``w_t`` C-contiguous; summing into columns per
        replicate keeps every later step on contiguous rows (no transposes, no scatters)."""
        if self._transposed is None:  # a sparse transpose is a new object: made once, not per chunk
            self._transposed = self.matrix.T
        return np.asarray(self._transposed @ w_t)

    def total(self) -> np.ndarray:
        """The feature sums over all rows, as one replicate (features × 1)."""
        return np.asarray(self.matrix.sum(axis=0)).reshape(-1, 1)

    def pairable_counts(self, s: np.ndarray) -> np.ndarray:
        """Ordinal: each value's pairable count n_c = Σ_k o_ck from pair sums (pairs ×
        replicates) -> values × replicates."""
        from scipy import sparse

        if self._incidence is None:
            p = self.pair_a.size
            # value <- its pairs (a == b: that pair twice, since o[a, a] = 2 u)
            self._incidence = sparse.csr_matrix(
                (np.ones(2 * p), (np.concatenate([self.pair_a, self.pair_b]), np.tile(np.arange(p), 2))),
                shape=(self.values.size, p))
        return np.asarray(self._incidence @ s)

    def interval_alphas(self, s: np.ndarray, nv: np.ndarray | None = None) -> np.ndarray:
        """Ordinal features' sums -> the *interval* alpha of each replicate: the same
        coincidences with interval distances (v_a - v_b)², so a bootstrap that needs both
        levels draws on one product. Equal to the interval features' alphas to rounding.
        ``nv``: :meth:`pairable_counts` of ``s``, when already at hand."""
        v = self.values - self.values.mean()  # centred: distances are shift-invariant
        if self._spread is None:  # a pair column's u stands for o[a, b] + o[b, a] = 2 u
            self._spread = 2.0 * (v[self.pair_a] - v[self.pair_b]) ** 2
        nv = self.pairable_counts(s) if nv is None else nv
        n = nv.sum(axis=0)
        s1, s2 = v @ nv, (v * v) @ nv
        with np.errstate(divide="ignore", invalid="ignore"):
            de_num = 2.0 * (n * s2 - s1 * s1)
            alpha = 1.0 - (n - 1.0) * (self._spread @ s) / de_num
        return np.where(de_num > 1e-12 * (n * s2 + s1 * s1), alpha, np.nan)

    def alphas(self, s: np.ndarray, nv: np.ndarray | None = None) -> np.ndarray:
        """alpha for each replicate (column) of summed features ``s`` (features ×
        replicates, as :meth:`weighted_sums` gives); NaN where D_e = 0. ``nv`` (ordinal):
        :meth:`pairable_counts` of ``s``, when already at hand."""
        values, level = self.values, self.level
        v = values.size
        with np.errstate(divide="ignore", invalid="ignore"):
            if level == "interval":
                do, n, s1, s2 = s[0], s[1], s[2], s[3]
                de_num = 2.0 * (n * s2 - s1 * s1)  # Σ_ck n_c n_k (v_c - v_k)²
                scale = n * s2 + s1 * s1
            elif level == "nominal":
                do, nv = s[0], s[1:]
                n = nv.sum(axis=0)
                de_num = n * n - (nv * nv).sum(axis=0)
                scale = n * n
            elif level == "ratio":
                do, nv = s[0], s[1:]
                n = nv.sum(axis=0)
                a, b = values[:, None], values[None, :]
                tot = a + b
                d = np.divide(a - b, tot, out=np.zeros((v, v)), where=tot != 0) ** 2
                de_num = ((d @ nv) * nv).sum(axis=0)  # d is symmetric
                scale = n * n * d.max()
            else:  # ordinal: distance (M_k - M_c)² with M the mid-cumulative counts
                # the unordered pair (a, b) stands for o[a, b] + o[b, a] = 2 u (a == b: o[a, a] = 2 u)
                pa, pb = self.pair_a, self.pair_b
                nv = self.pairable_counts(s) if nv is None else nv
                n = nv.sum(axis=0)
                mid = np.cumsum(nv, axis=0)
                mid -= nv / 2.0
                nm = nv * mid
                sum_m2 = (nm * mid).sum(axis=0)
                sum_m = nm.sum(axis=0)
                # Σ_ck o_ck M_c M_k (np.take and einsum: ~2x fancy indexing and a sum, here)
                cross = 2.0 * np.einsum("pr,pr->r", np.take(mid, pa, axis=0) * np.take(mid, pb, axis=0), s)
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


def krippendorff_alpha(data: ArrayLike, level: str) -> float:
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
            # level is one of LEVELS (the callers check it); the package types it as their Literal
            return float(krippendorff.alpha(reliability_data=p.raw, level_of_measurement=cast(Any, level)))
    return _own_alpha(p, level)


def alpha_with_ci(data: ArrayLike, level: str, n_resamples: int = 1000, seed: Seed = 0,
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
            w_t = np.ascontiguousarray(rng.multinomial(n, counts / n, size=c).T, dtype=float)
        else:
            w_t = _counts(rng.integers(0, n, size=(c, n)), n)
        boot[s:e] = f.alphas(f.weighted_sums(w_t))
    low, high = percentile_interval(boot, ci)
    return alpha, low, high, n


def weighted_kappa(a: ArrayLike, b: ArrayLike, weights: str | None = "quadratic", labels: ArrayLike | None = None
                   ) -> float:
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

    return _kappa_from_codes(codes(x), codes(y), k, weights)


def _kappa_from_codes(cx: np.ndarray, cy: np.ndarray, k: int, weights: str | None) -> float:
    """Weighted kappa of paired category positions (0..k-1)."""
    obs = np.bincount(cx * k + cy, minlength=k * k).reshape(k, k) / cx.size
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


def pairwise_kappas(m: np.ndarray, weights: str | None = "quadratic") -> dict[tuple[int, int], tuple[float, int]]:
    """:func:`weighted_kappa` for every pair of columns of ``m`` (items × raters, NaN =
    missing): ``{(i, j): (kappa, n pairs)}`` for i < j. Each pair has its own labels (the
    values either of the two gave, as weighted_kappa's default), so the numbers are those
    of one call per pair; the values are only coded once."""
    present = ~np.isnan(m)
    values = np.unique(m[present])
    codes = np.zeros(m.shape, dtype=np.int64)
    codes[present] = np.searchsorted(values, m[present])
    out = {}
    for i in range(m.shape[1]):
        for j in range(i + 1, m.shape[1]):
            both = present[:, i] & present[:, j]
            cx, cy = codes[both, i], codes[both, j]
            if not cx.size:
                out[(i, j)] = (float("nan"), 0)
                continue
            used = np.zeros(values.size, dtype=bool)
            used[cx] = used[cy] = True
            position = np.cumsum(used) - 1  # a value's place among the values this pair used
            out[(i, j)] = (_kappa_from_codes(position[cx], position[cy], int(used.sum()), weights), int(cx.size))
    return out


def _counts(idx: np.ndarray, n: int, fixed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """How often each of n items was drawn in each replicate: ``idx`` (replicates × n draws,
    ints in [0, n)) -> n items × replicates float counts, C-contiguous.

    Counted by scipy's COO-to-dense sum of duplicate entries: it adds each draw straight into
    a C-ordered items × replicates array (no transpose, no copy), several times faster than
    ``np.bincount`` over offset indices and, unlike it, free of the GIL. ``fixed``: the
    draws' weights (ones) and replicate numbers, :func:`_count_layout` of idx's shape."""
    from scipy import sparse

    ones, replicate = fixed if fixed is not None else _count_layout(*idx.shape)
    return sparse.coo_matrix((ones, (idx.reshape(-1), replicate)), shape=(n, idx.shape[0])).toarray()


def _count_layout(c: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`_counts` adds for c replicates of n draws: a one per draw, and its replicate."""
    return np.ones(c * n), np.repeat(np.arange(c, dtype=np.int64 if c * n >= 2**31 else np.int32), n)


class ResampleCounts:
    """The item counts of a bootstrap stratified by group: for each group of items (the
    labels of ``groups``, in order of appearance) ``n_resamples`` replicates, each as many
    draws with replacement from the group's items as it has items, in chunks of replicates.
    Each group's chunk has its own generator spawned from ``seed``, so any chunk can be drawn
    alone, in any thread and order, and the counts never depend on who drew them, or when."""

    def __init__(self, groups: ArrayLike, n_resamples: int, seed: Seed = 0) -> None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        groups = np.asarray(groups)
        self.labels = list(dict.fromkeys(groups.tolist()))
        self.sizes = {g: int((groups == g).sum()) for g in self.labels}
        self.n_resamples = n_resamples
        # one chunk size for every group (from the largest), so chunk k of every group holds
        # the same replicates and their sums add up chunk by chunk; at least 8 chunks where
        # there are 128 replicates, for threads to share (fixed: the draws depend on it)
        self.chunk = max(16, min(_CHUNK_ELEMENTS // max([1, *self.sizes.values()]), -(-n_resamples // 8)))
        self.starts = list(range(0, n_resamples, self.chunk))
        self._rngs = {g: r.spawn(len(self.starts))
                      for g, r in zip(self.labels, rng.spawn(len(self.labels)), strict=True)}
        self._layouts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def counts(self, g: object, k: int) -> np.ndarray:
        """Group g's counts for chunk k (replicates ``starts[k]``, ...): items × replicates,
        float, C-contiguous (what sparse products want)."""
        n, c = self.sizes[g], self.replicates(k)
        # int32 draws are ~1.7x faster than int64; c * n stays far below 2**31 by the chunking
        idx = self._rngs[g][k].integers(0, max(n, 1), size=(c, n), dtype=np.int32)
        layout = self._layouts.get((c, n))
        if layout is None:  # shared by every chunk of that shape (read-only; a race makes two)
            layout = self._layouts[(c, n)] = _count_layout(c, n)
        return _counts(idx, n, layout)

    def replicates(self, k: int) -> int:
        """How many replicates chunk k holds."""
        return min(self.n_resamples, self.starts[k] + self.chunk) - self.starts[k]


def stratified_alphas(datas: dict[str, np.ndarray], groups: np.ndarray, levels: Sequence[str] = ("interval", "ordinal"),
                      n_resamples: int = 1000, seed: Seed = 0, ci: float = 0.95, threads: int | None = None
                      ) -> dict[tuple[str, str, object], tuple[float, float, float, int]]:
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

    Chunks of replicates are bootstrapped in ``threads`` threads (default: the CPUs, at
    most 4); each group's chunk has its own generator spawned from ``seed``
    (:class:`ResampleCounts`) and pooled sums are added in group order, so the result is
    the same to the last bit whatever the number of threads.
    """
    out: dict[tuple[str, str, object], tuple[float, float, float, int]] = {}
    for key, (alpha, reps, n_items) in stratified_replicates(datas, groups, levels, n_resamples, seed,
                                                              threads).items():
        if reps is None or np.isnan(alpha):
            out[key] = (alpha, float("nan"), float("nan"), n_items)
        else:
            out[key] = (alpha, *percentile_interval(reps, ci), n_items)
    return out


def stratified_replicates(datas: dict[str, np.ndarray], groups: np.ndarray,
                          levels: Sequence[str] = ("interval", "ordinal"), n_resamples: int = 1000, seed: Seed = 0,
                          threads: int | None = None
                          ) -> dict[tuple[str, str, object], tuple[float, np.ndarray | None, int]]:
    """:func:`stratified_alphas` before the percentiles: ``{(name, level, group or "all"):
    (alpha, replicate alphas or None, n_items)}``; replicate r of "all" is the alpha of
    every group's replicate r together."""
    for level in levels:
        _check_level(level)
    groups = np.asarray(groups)
    counts = ResampleCounts(groups, n_resamples, seed)
    labels = counts.labels
    members = {g: np.nonzero(groups == g)[0] for g in labels}
    plans = []  # (name, level, pairable, features of all items, {group: (features, positions)})
    for name, data in datas.items():
        p_all = _Pairable(np.asarray(data, dtype=float))
        kept = np.nonzero(p_all.keep)[0]
        item_group = groups[p_all.keep]
        for level in levels:
            per: dict[object, tuple[_Features, np.ndarray | None, np.ndarray]] = {}
            f_all = _Features(p_all.key, p_all.values, level) if p_all.defined else None
            if f_all is not None:
                for g in labels:
                    rows = np.nonzero(item_group == g)[0]
                    if rows.size:  # positions of the group's pairable items among its members
                        f, cols = f_all.rows(rows).compact()
                        per[g] = (f, cols, np.searchsorted(members[g], kept[rows]))
            plans.append((name, level, p_all, f_all, per))

    # where both levels are asked for, the interval replicates come from the ordinal sums
    both = "interval" in levels and "ordinal" in levels
    reps: dict[tuple[str, str, object], np.ndarray] = {}
    for name, level, _, _features, per in plans:
        for g in [*per, "all"] if per and n_resamples else []:
            reps[(name, level, g)] = np.empty(n_resamples)

    def run_chunk(k: int) -> None:
        # one chunk of replicates for every group, groups in order: the pooled sums are added
        # in one order whatever the threads do, so the result is the same to the last bit
        start, c = counts.starts[k], counts.replicates(k)
        pooled: dict[tuple[str, str], np.ndarray] = {}
        for g in labels:
            w_t = counts.counts(g, k)  # items × replicates
            for name, level, _, f_all, per in plans:
                if g not in per or (level == "interval" and both):
                    continue
                f, cols, pos = per[g]
                assert f_all is not None  # a plan has groups only where it has features
                sums = f.weighted_sums(w_t if pos.size == members[g].size else w_t[pos])
                nv = f.pairable_counts(sums) if level == "ordinal" else None  # shared by both levels
                reps[(name, level, g)][start:start + c] = f.alphas(sums, nv)
                if level == "ordinal" and both:
                    reps[(name, "interval", g)][start:start + c] = f.interval_alphas(sums, nv)
                tot = pooled.get((name, level))
                if tot is None:  # features × replicates
                    tot = pooled[(name, level)] = np.zeros((f_all.matrix.shape[1], c))
                if cols is None:
                    tot += sums
                else:
                    tot[cols] += sums
        for name, level, _, f_all, _ in plans:
            if (name, level) in pooled:
                assert f_all is not None  # pooled sums exist only where there are features
                tot = pooled[(name, level)]
                nv = f_all.pairable_counts(tot) if level == "ordinal" else None
                reps[(name, level, "all")][start:start + c] = f_all.alphas(tot, nv)
                if level == "ordinal" and both:
                    reps[(name, "interval", "all")][start:start + c] = f_all.interval_alphas(tot, nv)

    workers = threads or min(4, os.cpu_count() or 1)
    chunks = range(len(counts.starts))
    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(workers) as pool:  # numpy's products release the GIL
            list(pool.map(run_chunk, chunks))
    else:
        for k in chunks:
            run_chunk(k)

    out: dict[tuple[str, str, object], tuple[float, np.ndarray | None, int]] = {}
    for name, level, p_all, f_all, per in plans:
        for g in [*labels, "all"]:
            if g == "all":
                n_items = p_all.n_items
                alpha = float(f_all.alphas(f_all.total())[0]) if f_all is not None else float("nan")
            else:
                n_items = int(per[g][0].matrix.shape[0]) if g in per else 0
                alpha = float(per[g][0].alphas(per[g][0].total())[0]) if g in per else float("nan")
            out[(name, level, g)] = (alpha, reps.get((name, level, g)), n_items)
    return out
