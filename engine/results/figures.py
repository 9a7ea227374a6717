"""Publication-ready figures of a database's results (``emtui figures``).

Per study, from :func:`engine.results.summary.build_summary`'s report and the per-answer scores:

- ``em-rate``: the EM rate of each condition with its bootstrap CI (each judge and the panel);
  a study with no EM definition gets ``metric-means`` instead: the panel mean of each metric;
- ``judge-heatmap``: conditions × judges (and the panel), the mean of the selected metric
  (default: the EM metric, else every metric), each cell annotated;
- ``score-distributions``: per metric, the distribution of the answers' panel scores in each
  condition (violins) with the condition's mean and CI; an answer's panel score is made by the
  study's panel aggregate, as the summary's panel rows are (:func:`answer_panel_scores`,
  :func:`score_distributions`: the figure's data, without drawing);
- ``training-curves``: the training metrics (loss, ...) per step of each run;
- ``checkpoint-curves``: the panel mean of each metric per checkpoint step;
- ``human-vs-panel``: human ratings against the judge panel, answer by answer.

Every figure names the panel's aggregate where it shows the panel (``Panel (median)``), as the
summary's tables do.

A figure with nothing to draw (no training metrics, no checkpoints, no human ratings yet) is
skipped with a note, never written empty. Files are ``<study>-<figure>.<format>`` (PNG at 200 dpi,
PDF with embedded TrueType fonts), each written to a temporary name and renamed when complete.

matplotlib is imported inside the functions that draw, so importing this module costs nothing.
Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through
pyplot, so a notebook's own backend and open figures are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.common.atomic import atomic_file
from engine.runs.progress import Progress
from engine.study.em_rule import describe

FORMATS = ("png", "pdf", "svg")
# Okabe & Ito's colour-blind-safe palette (yellow last: weak on white)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
PANEL_COLOUR = "#333333"
MATPLOTLIB_HINT = "figures need matplotlib: pip install 'emtui[figures]' (or pip install matplotlib)"
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 8.5, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.axisbelow": True, "grid.color": "#dddddd", "grid.linewidth": 0.6, "pdf.fonttype": 42,
    "ps.fonttype": 42, "svg.fonttype": "none", "figure.dpi": 100, "lines.linewidth": 1.6,
}


class FigureError(ValueError):
    """Figures that cannot be made as asked (bad format, bad folder): a one-line message."""


@dataclass
class FigureOptions:
    formats: tuple[str, ...] = ("png", "pdf")
    n_resamples: int = 2_000
    dpi: int = 200
    metric: str | None = None  # the heatmap's metric; None: the EM metric, else every metric

    @classmethod
    def parse(cls, *, formats: str = "png,pdf", n_resamples: int = 2_000, metric: str | None = None,
              dpi: int = 200) -> FigureOptions:
        fmts = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in formats.split(",") if f.strip()))
        bad = [f for f in fmts if f not in FORMATS]
        if bad or not fmts:
            raise FigureError(f"--format {formats!r}: expected a comma-separated list of {', '.join(FORMATS)}")
        return cls(formats=fmts, n_resamples=n_resamples, dpi=dpi, metric=metric)

    @staticmethod
    def out_dir(path: str | os.PathLike[str]) -> Path:
        """The output folder, checked (it exists, or its parent does) but not created."""
        p = Path(path).expanduser()
        if p.exists() and not p.is_dir():
            raise FigureError(f"--out {p} is a file, not a folder")
        if not p.exists() and not p.parent.is_dir():
            raise FigureError(f"--out {p}: its parent folder {p.parent} does not exist")
        return p


@dataclass
class FiguresResult:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return out or "study"


def make_figures(store: Any, out_dir: str | os.PathLike[str], *, study: str | None = None,
                 opts: FigureOptions | None = None, on_note: Callable[[str], None] | None = None,
                 progress: Progress | None = None) -> FiguresResult:
    """Draw every figure of every study (or of ``study``) into ``out_dir`` (created when its parent
    exists). Returns the files written and the notes on what was skipped (also passed to ``on_note``).
    ``progress`` counts the summary's studies, then the studies drawn, and hears what is being done;
    its cancellation stops the work between figures."""
    opts = opts or FigureOptions()
    progress = progress or Progress()
    out = FigureOptions.out_dir(out_dir)
    try:
        import matplotlib
    except ImportError:
        raise FigureError(MATPLOTLIB_HINT) from None
    created = not out.exists()
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise FigureError(f"cannot create {out}: {exc.strerror or exc}") from None
    result = FiguresResult()
    try:
        _draw_all(store, out, study, opts, on_note, result, matplotlib, progress)
    finally:
        if created and not result.written:  # a run that wrote nothing leaves no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
    return result


def _draw_all(store: Any, out: Path, study: str | None, opts: FigureOptions,
              on_note: Callable[[str], None] | None, result: FiguresResult, matplotlib: Any,
              progress: Progress) -> None:
    from engine.results.summary import SummaryOptions, build_summary

    # the figures draw no agreement, so its bootstrap is kept minimal
    loaded: dict[int, Any] = {}
    report = build_summary(store, SummaryOptions(n_resamples=opts.n_resamples, agreement_resamples=10, study=study),
                           keep_data=loaded, progress=progress)

    def note(text: str) -> None:
        result.notes.append(text)
        if on_note is not None:
            on_note(text)

    if not report["studies"]:
        note(f"no studies in {store.path}: no figures")
        return
    progress.set_total(progress.done + len(report["studies"]))  # the summary's studies, then the drawn ones
    with matplotlib.rc_context(STYLE):
        for st in report["studies"]:
            progress.check()
            if st.get("note"):
                note(f"{st['name']}: {st['note']}; no figures")
            else:
                progress.note(f"{st['name']}: drawing")
                _study_figures(store, report, st, loaded, out, opts, result, note)
            progress.advance()


# -- one study ---------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    name: str
    study_id: int
    conditions: list[str]
    colours: dict[str, str]
    scales: dict[str, tuple[float, float]]
    worse: dict[str, str]  # metric -> "higher" | "lower" is worse, when the rubric says
    em: dict[str, Any] | None
    panel: str = "Panel"  # the panel as the tables name it: ``Panel (median)``, its aggregate said


@dataclass
class PanelScores:
    """One metric's panel score per answer (the study's answers in :class:`~engine.results.summary._StudyData`
    order), made as the summary's panel row of the metric is: ``aggregate`` says how (a majority's numeric
    scores are the judges' median; its labels the majority label)."""

    aggregate: str
    values: np.ndarray  # NaN: no panel score (no judge scored it, a tie, or a special word such as UNKNOWN)


# what an answer's panel score is under each aggregate, in an axis label's words
PANEL_SCORE_WORDS = {"mean": "judges' mean", "median": "judges' median", "majority": "judges' majority label"}


def answer_panel_scores(store: Any, study: dict[str, Any], data: Any, how: str) -> dict[str, PanelScores]:
    """Per scored metric, each answer's panel score under the aggregate ``how``: the summary's own panel
    columns (engine/results/summary.py), so that a figure shows the answers its table's numbers are of."""
    from engine.results.summary import aggregated_columns

    return {col.metric: PanelScores(col.aggregate or how, col.values)
            for col in aggregated_columns(store, study, data, how)
            if col.judge == "panel" and col.metric in data.matrices}


def score_distributions(data: Any, panel: dict[str, PanelScores]) -> dict[str, dict[str, np.ndarray]]:
    """What the score-distributions figure draws: per metric, per condition (in the study's order), the
    panel scores of the condition's answers that have one. A condition's answers are those its summary
    row is of (its final model's: :func:`engine.results.summary.condition_rows`), so the violin, the
    median and the mean ◆ with its CI all describe the same answers."""
    from engine.results.summary import condition_masks, condition_rows

    masks = condition_masks(data, condition_rows(data))
    out: dict[str, dict[str, np.ndarray]] = {}
    for metric in data.matrices:
        values = panel[metric].values
        out[metric] = {c["name"]: v[~np.isnan(v)] for c in data.conditions for v in [values[masks[c["id"]]]]}
    return out


def _study_figures(store: Any, report: dict[str, Any], st: dict[str, Any], loaded: dict[int, Any], out: Path,
                   opts: FigureOptions, result: FiguresResult, note: Callable[[str], None]) -> None:
    from engine.results.report_format import panel_title

    name = st["name"]
    study_id = int(store.find_study(name)["id"])
    data = loaded[study_id]
    conditions = [c["name"] for c in data.conditions]
    scales: dict[str, tuple[float, float]] = {}
    worse: dict[str, str] = {}
    for rub in store.study_rubrics(study_id):
        for m in json.loads(rub.get("metrics") or "[]"):
            sc = m.get("scale")
            if isinstance(sc, list) and len(sc) == 2 and all(isinstance(v, (int, float)) for v in sc):
                scales.setdefault(m["name"], (float(sc[0]), float(sc[1])))
            if m.get("higher_is") in ("worse", "better"):
                worse.setdefault(m["name"], "higher" if m["higher_is"] == "worse" else "lower")
    ctx = _Ctx(name, study_id, conditions, {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(conditions)},
               scales, worse, st.get("em"), panel_title(report, name))
    rows = [r for r in report["scores"] if r["study"] == name]
    prefix = slug(name)

    def save(fig: Any, figure: str) -> None:
        for fmt in opts.formats:
            result.written.append(_save(fig, out / f"{prefix}-{figure}.{fmt}", fmt, opts.dpi))

    if not data.matrices:
        note(f"{name}: no scores yet: no figures")
        return
    em_rows = [r for r in rows if r["metric"] == "em_rate"]
    if em_rows:
        save(_em_rate(ctx, em_rows), "em-rate")
    else:
        save(_metric_means(ctx, [r for r in rows if r["judge"] == "panel"]), "metric-means")

    metrics = [m for m in data.matrices]
    if opts.metric is not None:
        heat = [opts.metric] if opts.metric in data.matrices or (opts.metric == "em_rate" and em_rows) else []
        if not heat:
            note(f"{name}: no metric {opts.metric!r} (metrics: {', '.join(metrics)}): judge heatmap skipped")
    elif ctx.em and ctx.em.get("metric") in data.matrices:
        heat = [ctx.em["metric"]]
    else:
        heat = metrics
    if heat:
        save(_heatmap(ctx, rows, heat), "judge-heatmap")
    panel = answer_panel_scores(store, store.get_study(study_id), data, str(st.get("aggregate") or "mean"))
    save(_distributions(ctx, data, rows, panel), "score-distributions")

    train = store.study_train_metric_rows(study_id)
    if train:
        save(_training(ctx, train), "training-curves")
    else:
        note(f"{name}: no training metrics recorded: training curves skipped")

    ck = [r for r in report.get("breakdowns", []) if r["study"] == name and r["by"] == "checkpoint"
          and r["judge"] == "panel" and r["metric"] in data.matrices and r["group"].startswith("step ")]
    if ck:
        save(_checkpoints(ctx, ck), "checkpoint-curves")
    else:
        note(f"{name}: no answers from training checkpoints: checkpoint curves skipped")

    human = store.study_human_rating_rows(study_id)
    shared = sorted({h["metric"] for h in human} & set(metrics))
    if not human:
        note(f"{name}: no human ratings yet: human-vs-panel scatter skipped")
    elif not shared:
        note(f"{name}: human ratings share no metric with the judges "
             f"({', '.join(sorted({h['metric'] for h in human}))} vs {', '.join(metrics)}): "
             "human-vs-panel scatter skipped")
    else:
        save(_human_vs_panel(ctx, data, human, shared, panel), "human-vs-panel")


def _save(fig: Any, path: Path, fmt: str, dpi: int) -> Path:
    meta = {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else {}
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.05, metadata=meta)
    return path


# -- drawing helpers ---------------------------------------------------------------------------------

def _figure(n_panels: int, *, panel_w: float, panel_h: float = 3.2, max_cols: int = 3) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(max_cols, n_panels)
    rows = -(-n_panels // cols)
    fig = Figure(figsize=(panel_w * cols, panel_h * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _condition_axis(ax: Any, conditions: list[str]) -> None:
    ax.set_xticks(range(len(conditions)))
    long = len(conditions) > 3 and max(len(c) for c in conditions) > 6
    ax.set_xticklabels(conditions, rotation=30 if long else 0, ha="right" if long else "center",
                       rotation_mode="anchor")
    ax.set_xlim(-0.6, len(conditions) - 0.4)
    ax.set_xlabel("condition")


def _metric_label(ctx: _Ctx, metric: str, *, name: bool = True) -> str:
    side = ctx.worse.get(metric)
    hint = "higher = worse" if side == "higher" else "higher = better" if side == "lower" else ""
    if not name:
        return f"({hint})" if hint else ""
    return f"{metric} ({hint})" if hint else metric


def _panel_width(n_conditions: int, per: float = 0.55, base: float = 1.6) -> float:
    return max(3.4, base + per * n_conditions)


def _limits(ctx: _Ctx, metric: str) -> tuple[float, float] | None:
    """The rubric's scale with a little room, when the rubric gives one."""
    if metric in ctx.scales:
        lo, hi = ctx.scales[metric]
        pad = 0.04 * (hi - lo)
        return lo - pad, hi + pad
    return None


def _judges(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen = dict.fromkeys((r["judge"], r["judge_name"]) for r in rows)
    return [j for j in seen if j[0] != "panel"] + [j for j in seen if j[0] == "panel"]


def _bars(ax: Any, ctx: _Ctx, rows: list[dict[str, Any]], scale: float = 1.0, unit: str = "",
          digits: int = 2) -> None:
    """Grouped bars: one group per condition, one bar per judge (the panel last), CI whiskers.
    With a single bar per condition the bars take the conditions' colours and carry their values."""
    judges = _judges(rows)
    if len([j for j in judges if j[0] != "panel"]) <= 1:  # one judge: the panel is that judge
        judges = [j for j in judges if j[0] == "panel"] or judges
    grid = {(r["condition"], r["judge"]): r for r in rows}
    k = len(judges)
    width = (0.8 if k > 1 else 0.66) / k
    for i, (judge, label) in enumerate(judges):
        xs, ys, lo, hi = [], [], [], []
        for ci, cond in enumerate(ctx.conditions):
            r = grid.get((cond, judge))
            if r is None or r["mean"] is None:
                continue
            xs.append(ci - 0.4 + width * (i + 0.5))
            ys.append(r["mean"] * scale)
            lo.append((r["mean"] - (r["ci_low"] if r["ci_low"] is not None else r["mean"])) * scale)
            hi.append(((r["ci_high"] if r["ci_high"] is not None else r["mean"]) - r["mean"]) * scale)
        if k == 1:
            colour: Any = [ctx.colours[c] for c in ctx.conditions if (grid.get((c, judge)) or {}).get("mean")
                           is not None]
        else:
            colour = PANEL_COLOUR if judge == "panel" else PALETTE[i % len(PALETTE)]
        name = ctx.panel if judge == "panel" and k > 1 else label
        ax.bar(xs, ys, width * 0.92, color=colour, label=name, zorder=2)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="black", elinewidth=1, capsize=2.5, zorder=3)
        if k * len(ctx.conditions) <= 30:  # the values themselves, while they fit
            for x, y, h in zip(xs, ys, hi, strict=True):
                ax.annotate(f"{y:.{digits}f}{unit}", (x, y + h), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8 if k == 1 else 6.5)
    ax.yaxis.grid(True)
    _condition_axis(ax, ctx.conditions)
    if k > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _em_rate(ctx: _Ctx, rows: list[dict[str, Any]]) -> Any:
    fig, (ax,) = _figure(1, panel_w=_panel_width(len(ctx.conditions)) + (2.0 if len(_judges(rows)) > 2 else 0))
    _bars(ax, ctx, rows, scale=100.0, unit="%", digits=1)
    definition = describe(ctx.em)
    n = {r["condition"]: r["n"] for r in rows if r["judge"] == "panel"}
    ax.set_xticklabels([f"{t.get_text()}\nn = {n[t.get_text()]}" if t.get_text() in n else t.get_text()
                        for t in ax.get_xticklabels()])
    ax.set_ylabel("EM rate (%)")
    ax.set_ylim(0, 110)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(f"{ctx.name}\nEM rate by condition ({definition}), 95% CI", loc="left")
    return fig


def _metric_means(ctx: _Ctx, rows: list[dict[str, Any]]) -> Any:
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    fig, axes = _figure(len(metrics), panel_w=_panel_width(len(ctx.conditions)))
    for ax, metric in zip(axes, metrics, strict=True):
        mrows = [r for r in rows if r["metric"] == metric]
        _bars(ax, ctx, mrows, digits=1 if ctx.scales.get(metric, (0, 0))[1] > 10 else 2)
        lim = _limits(ctx, metric)
        if lim:
            ax.set_ylim(min(0.0, lim[0]), lim[1] + 0.06 * (lim[1] - lim[0]))
        ax.set_ylabel(f"mean {_metric_label(ctx, metric, name=False)}".strip())
        ax.set_title(metric)
    fig.suptitle(f"{ctx.name}: {ctx.panel}, mean by condition (95% CI)", x=0.0, ha="left", fontsize=11)
    return fig


def _heatmap(ctx: _Ctx, rows: list[dict[str, Any]], metrics: list[str]) -> Any:
    import matplotlib

    judges = _judges(rows)
    if len([j for j in judges if j[0] != "panel"]) == 1:  # one judge: its panel column would repeat it
        judges = [j for j in judges if j[0] != "panel"]
    cmap = matplotlib.colormaps["viridis"]
    w = max(3.6, 1.4 + 1.15 * len(judges) + 0.06 * max(len(c) for c in ctx.conditions))
    fig, axes = _figure(len(metrics), panel_w=w, panel_h=max(2.6, 1.2 + 0.42 * len(ctx.conditions)))
    for ax, metric in zip(axes, metrics, strict=True):
        grid = {(r["condition"], r["judge"]): r["mean"] for r in rows if r["metric"] == metric}
        vals = np.array([[np.nan if grid.get((c, j)) is None else grid[(c, j)] for j, _ in judges]
                         for c in ctx.conditions], dtype=float)
        pct = metric == "em_rate"
        if pct:
            vals = vals * 100
        lo, hi = (0.0, 100.0) if pct else ctx.scales.get(metric, (np.nanmin(vals), np.nanmax(vals)))
        if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
            lo, hi = (0.0, 1.0) if not np.isfinite(lo) else (lo, lo + 1.0)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        digits = 1 if pct or hi - lo > 10 else 2
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                v = vals[i, j]
                if np.isnan(v):
                    ax.text(j, i, "—", ha="center", va="center", fontsize=9, color="#555555")
                    continue
                shade = (v - lo) / (hi - lo)
                ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize=9,
                        color="white" if shade < 0.55 else "black")
        ax.set_xticks(range(len(judges)))
        ax.set_xticklabels([_short(label) if j != "panel" else ctx.panel for j, label in judges],
                           rotation=30, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(ctx.conditions)))
        ax.set_yticklabels(ctx.conditions)
        ax.set_xlabel("judge")
        ax.set_ylabel("condition")
        ax.spines[:].set_visible(False)
        ax.tick_params(length=0)
        if judges and judges[-1][0] == "panel" and len(judges) > 1:
            ax.axvline(len(judges) - 1.5, color="white", linewidth=3)
        bar = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
        bar.set_label("EM rate (%)" if pct else f"mean {_metric_label(ctx, metric, name=False)}".strip())
        bar.outline.set_visible(False)
        ax.set_title("EM rate" if pct else metric)
    fig.suptitle(f"{ctx.name}: mean score by judge and condition", x=0.0, ha="left", fontsize=11)
    return fig


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _short(label: str, n: int = 22) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _distributions(ctx: _Ctx, data: Any, rows: list[dict[str, Any]], panel: dict[str, PanelScores]) -> Any:
    metrics = list(data.matrices)
    fig, axes = _figure(len(metrics), panel_w=_panel_width(len(ctx.conditions), per=0.6))
    means = {(r["condition"], r["metric"]): r for r in rows if r["judge"] == "panel"}
    drawn = score_distributions(data, panel)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, cond in enumerate(ctx.conditions):
            v = drawn[metric][cond]
            if v.size == 0:
                continue
            if v.size > 1:
                parts = ax.violinplot([v], positions=[i], widths=0.8, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(ctx.colours[cond])
                    body.set_edgecolor(ctx.colours[cond])
                    body.set_alpha(0.55)
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            ax.vlines(i, q1, q3, color="#222222", linewidth=3, zorder=3)
            ax.scatter([i], [med], s=14, color="white", zorder=4, edgecolors="#222222", linewidths=0.6)
            r = means.get((cond, metric))
            if r and r["mean"] is not None:
                ax.errorbar([i + 0.22], [r["mean"]],
                            yerr=[[r["mean"] - (r["ci_low"] if r["ci_low"] is not None else r["mean"])],
                                  [(r["ci_high"] if r["ci_high"] is not None else r["mean"]) - r["mean"]]],
                            fmt="D", color="black", markersize=3.5, elinewidth=1, capsize=2, zorder=4)
        lim = _limits(ctx, metric)
        if lim:
            ax.set_ylim(*lim)
        ax.yaxis.grid(True)
        _condition_axis(ax, ctx.conditions)
        how = PANEL_SCORE_WORDS.get(panel[metric].aggregate, panel[metric].aggregate)
        ax.set_ylabel(f"{how} {_metric_label(ctx, metric, name=False)}".strip())
        ax.set_title(metric)
    fig.suptitle(f"{ctx.name} · {ctx.panel}: each answer's score\n"
                 "violin = distribution, bar = interquartile range, ○ = median, ◆ = mean with 95% CI",
                 x=0.0, ha="left", fontsize=10)
    return fig


def _training(ctx: _Ctx, rows: list[dict[str, Any]]) -> Any:
    names = list(dict.fromkeys(r["name"] for r in rows))
    fig, axes = _figure(len(names), panel_w=4.2)
    for ax, name in zip(axes, names, strict=True):
        runs: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for r in rows:
            if r["name"] == name:
                runs.setdefault((r["condition"], r["train_run_id"]), []).append((r["step"], r["value"]))
        conds = [c for c, _ in runs]
        for (cond, run), pts in runs.items():
            pts.sort()
            label = cond if conds.count(cond) == 1 else f"{cond} (run {run})"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=ctx.colours.get(cond, PALETTE[0]),
                    label=label)
        ax.set_xlabel("training step")
        _integer_ticks(ax)
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(True)
        ax.legend()
    fig.suptitle(f"{ctx.name}: training curves", x=0.0, ha="left", fontsize=11)
    return fig


def _checkpoints(ctx: _Ctx, rows: list[dict[str, Any]]) -> Any:
    """Panel mean per checkpoint step with its CI band: the summary's checkpoint breakdown."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    fig, axes = _figure(len(metrics), panel_w=4.2)
    for ax, metric in zip(axes, metrics, strict=True):
        mine = [r for r in rows if r["metric"] == metric and r["mean"] is not None]
        for cond in dict.fromkeys(r["condition"] for r in mine):
            pts = sorted((int(r["group"].split()[1]), r) for r in mine if r["condition"] == cond)
            steps = [s for s, _ in pts]
            colour = ctx.colours.get(cond, PALETTE[0])
            ax.plot(steps, [r["mean"] for _, r in pts], marker="o", markersize=3.5, color=colour, label=cond)
            ax.fill_between(steps, [r["ci_low"] if r["ci_low"] is not None else r["mean"] for _, r in pts],
                            [r["ci_high"] if r["ci_high"] is not None else r["mean"] for _, r in pts],
                            color=colour, alpha=0.18, linewidth=0)
        lim = _limits(ctx, metric)
        if lim:
            ax.set_ylim(*lim)
        ax.set_xlabel("checkpoint step")
        _integer_ticks(ax)
        ax.set_ylabel(f"mean {_metric_label(ctx, metric, name=False)}".strip())
        ax.set_title(metric)
        ax.grid(True)
        ax.legend()
    fig.suptitle(f"{ctx.name}: {ctx.panel} across checkpoints (95% CI)", x=0.0, ha="left", fontsize=11)
    return fig


def _human_vs_panel(ctx: _Ctx, data: Any, human: list[dict[str, Any]], metrics: list[str],
                    panel_of: dict[str, PanelScores]) -> Any:
    fig, axes = _figure(len(metrics), panel_w=3.8, panel_h=3.6)
    names = {c["id"]: c["name"] for c in data.conditions}
    cond_of = data.cond_of_answer
    row_of = {int(g): i for i, g in enumerate(data.answer_ids)}
    for ax, metric in zip(axes, metrics, strict=True):
        panel = panel_of[metric].values
        per: dict[int, list[float]] = {}
        for h in human:
            if h["metric"] == metric and h["generation_id"] in row_of:
                per.setdefault(h["generation_id"], []).append(float(h["score"]))
        xs, ys, cs = [], [], []
        for gid, scores in per.items():
            x = panel[row_of[gid]]
            if np.isnan(x):
                continue
            xs.append(float(x))
            ys.append(float(np.mean(scores)))
            cs.append(names.get(int(cond_of[row_of[gid]]), ""))
        for cond in dict.fromkeys(cs):
            pick = [i for i, c in enumerate(cs) if c == cond]
            ax.scatter([xs[i] for i in pick], [ys[i] for i in pick], s=16, alpha=0.75,
                       color=ctx.colours.get(cond, PALETTE[0]), label=cond, edgecolors="none")
        r = float(np.corrcoef(xs, ys)[0, 1]) if len(xs) > 2 and np.std(xs) > 0 and np.std(ys) > 0 else float("nan")
        ax.set_title(f"{metric}: Pearson r = {r:.2f}, n = {len(xs)}" if np.isfinite(r) else f"{metric}: n = {len(xs)}")
        ax.set_xlabel(f"{ctx.panel}: {_metric_label(ctx, metric)}")
        ax.set_ylabel(f"human mean: {metric}")
        ax.grid(True)
        if cs:
            ax.legend()
    fig.suptitle(f"{ctx.name}: human ratings vs the judges' {ctx.panel}, per answer", x=0.0, ha="left", fontsize=11)
    return fig
