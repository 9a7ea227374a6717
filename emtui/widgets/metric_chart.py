"""A line chart of training metrics (textual-plotext): one curve per run, drawn again when its points change.

What it draws is kept as :attr:`MetricChart.series` (label -> (step, value) points) so a test reads the
chart's data, not its pixels. Labels come from the database (condition names): control sequences are
stripped before plotext sees them — its output is read back as ANSI, where an escape in a label would act.
"""

from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

from engine.common.text import one_line

MAX_POINTS = 400  # points a curve is drawn with at most: a long run is thinned (every k-th, and the last)
# ... and no more than the plot has braille dots across (2 a cell): plotext's cost grows with the line it
# draws — a noisy curve of 400 points took 15 ms to draw in 38 columns, of 80 points 5 ms
DOTS_PER_CELL = 2


def thin(points: list[tuple[int, float]], limit: int = MAX_POINTS) -> list[tuple[int, float]]:
    if len(points) <= limit:
        return points
    k = -(-len(points) // limit)
    out = points[::k]
    return out if out[-1] == points[-1] else [*out, points[-1]]


def ticks(lo: float, hi: float, n: int = 5, *, whole: bool = False) -> list[float]:
    """``n`` evenly spaced ticks from ``lo`` to ``hi`` (whole numbers, without repeats, when ``whole``)."""
    if hi <= lo:
        return [lo]
    out = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    return sorted({round(x) for x in out}) if whole else out


class MetricChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = ""
        self.title = ""
        self.series: dict[str, list[tuple[int, float]]] = {}
        self._drawn: tuple | None = None

    def show(self, metric: str, title: str, series: dict[str, list[tuple[int, float]]]) -> None:
        """Draw ``series`` (label -> points) under ``title``; nothing is redrawn when they are as drawn."""
        clean = {one_line(label, 30): list(points) for label, points in series.items()}
        key = (metric, title, tuple((k, len(v), v[-1] if v else None) for k, v in clean.items()))
        if key == self._drawn:
            return
        self._drawn = key
        self.metric = metric
        self.title = title
        self.series = clean
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        has_points = any(clean.values())
        plt.title(one_line(title, 60) + ("" if has_points else " (no points yet)"))
        for label, points in clean.items():
            if not points:
                continue
            width = self.size.width or self.app.size.width
            shown = thin(points, min(MAX_POINTS, max(40, DOTS_PER_CELL * width)))
            xs, ys = [p[0] for p in shown], [p[1] for p in shown]
            plt.plot(xs, ys, marker="braille", label=label if len(clean) > 1 else None)
        if has_points:  # steps are whole numbers; values in four significant digits (a learning rate: 1e-05)
            steps = [p[0] for pts in clean.values() for p in pts]
            values = [p[1] for pts in clean.values() for p in pts]
            xt = ticks(min(steps), max(steps), whole=True)
            plt.xticks(xt, [f"{int(x):,}" for x in xt])
            yt = ticks(min(values), max(values))
            plt.yticks(yt, [f"{y:,.0f}" if abs(y) >= 1000 else f"{y:.3g}" for y in yt])
        self.refresh()

    def render(self):
        if self.size.width < 10 or self.size.height < 4:  # plotext cannot lay out a chart this small
            return Text("")
        return super().render()
