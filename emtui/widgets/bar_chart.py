"""A terminal bar chart with confidence-interval whiskers: one row per bar.

Each row is ``label  ████████▌  ├───┤  value [low,high]``: the bar (unicode eighth blocks)
runs from the scale's start to the mean, the whisker ``├──┤`` from the CI's low to its high
end, drawn over the bar where they overlap. A last row shows the scale. Labels come from
the database, so they are cleaned of control sequences and never read as markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from engine.common.text import one_line
from engine.results.report_format import fmt_ci

EIGHTHS = " ▏▎▍▌▋▊▉█"
BAR_STYLE = "blue"
WHISKER_STYLE = "bold"
OVER_BAR_STYLE = "bold bright_white on blue"


@dataclass(frozen=True)
class Bar:
    label: str
    mean: float | None
    low: float | None = None
    high: float | None = None


def nice_ceiling(x: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) that is >= x (x > 0)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    k = math.floor(math.log10(x))
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        v = step * 10.0**k
        if v >= x * (1 - 1e-12):
            return v
    return 10.0 ** (k + 1)  # pragma: no cover - the loop always returns


def scale_of(bars: list[Bar], *, percent: bool = False) -> tuple[float, float]:
    """(start, end) of the axis: from 0 (or the lowest value, when negative) to a round number."""
    values = [v for b in bars for v in (b.mean, b.low, b.high) if v is not None and math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    low, high = min(0.0, min(values)), max(values)
    if percent and high <= 1.0 and low >= 0.0:
        return 0.0, min(1.0, nice_ceiling(high)) if high > 0 else 1.0
    end = nice_ceiling(high) if high > 0 else 1.0
    start = -nice_ceiling(-low) if low < 0 else 0.0
    return start, end


def fmt_tick(v: float, *, percent: bool) -> str:
    if percent:
        return f"{v * 100:g}%"
    return f"{v:g}"


class BarChart(Widget):
    """Bars with whiskers. Give it data with :meth:`set_bars`; it draws to its width."""

    DEFAULT_CSS = """
    BarChart {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bars: list[Bar] = []
        self.percent = False
        self.message = ""

    def set_bars(self, bars: list[Bar], *, percent: bool = False) -> None:
        self.bars, self.percent, self.message = list(bars), percent, ""
        self.refresh(layout=True)

    def set_message(self, message: str) -> None:
        """Show a line of text (an empty or computing state) instead of bars."""
        self.bars, self.message = [], message
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.bars) + 1 if self.bars else 1

    def render(self) -> Text:
        return self.chart(self.content_region.width or self.size.width or 80)

    # -- drawing ------------------------------------------------------------------------------

    def value_text(self, b: Bar) -> str:
        return fmt_ci(b.mean, b.low, b.high, percent=self.percent).replace(", ", ",")

    def chart(self, width: int) -> Text:
        if not self.bars:
            return Text(self.message or "No data", style="dim")
        label_w = min(max(len(one_line(b.label, 200)) for b in self.bars), 16)
        value_w = max(len(self.value_text(b)) for b in self.bars)
        bar_w = width - label_w - value_w - 2
        if bar_w < 10:  # too narrow for the numbers: bars only
            value_w, bar_w = 0, max(4, width - label_w - 1)
        start, end = scale_of(self.bars, percent=self.percent)
        out = Text(no_wrap=True, overflow="crop")
        for i, b in enumerate(self.bars):
            if i:
                out.append("\n")
            out.append(one_line(b.label, label_w).ljust(label_w) + " ")
            out.append_text(self.bar_cells(b, bar_w, start, end))
            if value_w:
                out.append(" " + self.value_text(b).rjust(value_w))
        out.append("\n")
        out.append_text(self.axis(label_w, bar_w, start, end))
        return out

    def bar_cells(self, b: Bar, w: int, start: float, end: float) -> Text:
        """The bar and its whisker in ``w`` cells."""
        span = (end - start) or 1.0

        def pos(v: float) -> float:
            return min(max((v - start) / span * w, 0.0), float(w))

        fill = [0.0] * w
        if b.mean is not None:
            zero, top = pos(max(start, 0.0)), pos(b.mean)
            for c in range(w):
                if top >= zero:  # eighth blocks grow rightwards
                    fill[c] = min(max(top - c, 0.0), 1.0) - min(max(zero - c, 0.0), 1.0)
                else:  # a negative mean: whole cells left of zero
                    fill[c] = 1.0 if top <= c + 0.5 <= zero else 0.0
        whisker: dict[int, str] = {}
        if b.low is not None and b.high is not None:
            cl, ch = min(int(pos(b.low)), w - 1), min(int(pos(b.high)), w - 1)
            if cl == ch:
                whisker[cl] = "┼"
            else:
                whisker[cl], whisker[ch] = "├", "┤"
                for c in range(cl + 1, ch):
                    whisker[c] = "─"
        cells = [(whisker[c], OVER_BAR_STYLE if fill[c] >= 0.5 else WHISKER_STYLE) if c in whisker
                 else (EIGHTHS[round(fill[c] * 8)], BAR_STYLE) for c in range(w)]
        # one span per run of a style, not one per cell: a chart's hundreds of spans took 50-80 ms to draw
        text = Text()
        run: list[str] = []
        for c, (char, style) in enumerate(cells):
            run.append(char)
            if c + 1 == w or cells[c + 1][1] != style:
                text.append("".join(run), style=style)
                run = []
        return text

    def axis(self, label_w: int, w: int, start: float, end: float) -> Text:
        """The scale under the bars, one line: ``0──────1.5──────3``."""
        line = ["─"] * w
        first = fmt_tick(start, percent=self.percent)
        mid = fmt_tick((start + end) / 2, percent=self.percent)
        last = fmt_tick(end, percent=self.percent)
        line[0:len(first)] = first
        at = max(len(first) + 1, w // 2 - len(mid) // 2)
        if at + len(mid) < w - len(last) - 1:
            line[at:at + len(mid)] = mid
        line[max(0, w - len(last)):w] = last
        out = Text(" " * (label_w + 1), no_wrap=True, overflow="crop")
        out.append("".join(line[:w]), style="dim")
        return out
