"""The benchmarks' pictures: PNG plots beside the numbers they print, in one style.

matplotlib with the Agg backend (files only, no display). A benchmark adds ``--plot PATH``
with :func:`add_argument`; without it no picture is made. The pictures in
``docs/benchmarks.md`` are committed under ``docs/img/``.

Three shapes cover the benchmarks:

* :func:`distribution` — a row of dots per series (one per sample, a bar at the median),
  with vertical lines at the floors' medians;
* :func:`timeline` — several series over one time axis, one panel each;
* :func:`grouped_bars` — one group of bars per x value (e.g. batch size), a bar per series.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: Dots per inch of every saved picture: 8x4.5 inches make 800x450 pixels, tens of KB.
DPI = 100
SIZE = (8.0, 4.5)
#: Colour-blind-safe (Okabe-Ito, its yellow swapped for olive, legible on white), in order.
COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#999933",
    "#000000",
)
STYLE = {
    "figure.figsize": SIZE,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=COLOURS),
    "legend.frameon": False,
    "legend.fontsize": 9,
}


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--plot PATH``: where to write the PNG (none by default: numbers only)."""
    parser.add_argument(
        "--plot",
        type=pathlib.Path,
        default=None,
        metavar="PATH",
        help="also write a PNG plot of the results to PATH (e.g. docs/img/NAME.png)",
    )


def save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    """Write ``fig`` as a PNG at ``path`` (its directory made if missing), and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    print(f"plot written to {path}", flush=True)
    return path


def distribution(
    path: pathlib.Path,
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    floors: Mapping[str, Sequence[float]] | None = None,
) -> pathlib.Path:
    """A row per series with a dot per sample and a bar at its median, floors first (grey).

    Values are in a unit whose whole numbers read well (ms): the medians are labelled so.

    Each floor's median is also a dashed vertical line across every row, so where each
    series' samples fall against the floor shows at a glance. With a few to a few dozen
    samples per series, dots read better than histograms or overlapping ECDFs. A series
    without samples gets no row.
    """
    rows = [(name, values, "#777777", True) for name, values in (floors or {}).items() if values]
    rows += [
        (name, values, _colour(i), False)
        for i, (name, values) in enumerate(series.items())
        if values
    ]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(SIZE[0], max(2.5, 0.45 * len(rows) + 1.5)))
        for y, (_, values, colour, _) in enumerate(reversed(rows)):
            # Spread equal-looking samples a little vertically so each dot shows.
            offsets = [((i % 5) - 2) * 0.06 for i in range(len(values))]
            ax.scatter(values, [y + o for o in offsets], s=22, color=colour, alpha=0.8, zorder=3)
            p50 = median(values)
            ax.plot([p50, p50], [y - 0.3, y + 0.3], color=colour, linewidth=2.5, zorder=4)
            ax.annotate(
                f"{p50:.0f}",
                (p50, y + 0.3),
                fontsize=8,
                ha="center",
                va="bottom",
                color=colour,
            )
        for index, (name, values, _, _) in enumerate(r for r in rows if r[3]):
            ax.axvline(
                median(values),
                color="#555555",
                linestyle=("--", ":", "-.")[index % 3],
                linewidth=1,
                label=f"{name}, p50",
                zorder=1,
            )
        ax.set_yticks(
            range(len(rows)),
            [f"{name} (n={len(values)})" for name, values, _, _ in reversed(rows)],
        )
        ax.set_ylim(-0.6, len(rows) - 0.2)
        ax.grid(axis="y", visible=False)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if floors:
            # Below the axes, where no dot can be under it.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=len(floors))
        return save(fig, path)


def timeline(
    path: pathlib.Path,
    times: Sequence[float],
    panels: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    xlabel: str = "seconds",
    marks: Mapping[str, float] | None = None,
) -> pathlib.Path:
    """One panel per ``(label, values)`` over the shared ``times``, as steps.

    ``marks`` are moments (label → time) drawn as vertical lines across every panel.
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(panels), 1, sharex=True, figsize=(SIZE[0], 1.8 * len(panels) + 0.8), squeeze=False
        )
        for index, (ax, (label, values)) in enumerate(zip(axes[:, 0], panels, strict=True)):
            ax.step(times, values, where="post", color=_colour(index), linewidth=1.4)
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            for m_index, (name, at) in enumerate((marks or {}).items()):
                ax.axvline(
                    at,
                    color="#555555",
                    linestyle=(":", "--", "-.")[m_index % 3],
                    linewidth=1,
                    label=name if index == 0 else None,
                )
        axes[0, 0].set_title(title)
        axes[-1, 0].set_xlabel(xlabel)
        if marks:
            axes[0, 0].legend(loc="upper left")
        return save(fig, path)


def grouped_bars(
    path: pathlib.Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log: bool = False,
) -> pathlib.Path:
    """A group of bars per entry of ``groups``, one bar per series (None: no bar), values atop."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots()
        width = 0.8 / max(1, len(series))
        for index, (name, values) in enumerate(series.items()):
            xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
            shown = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
            bars = ax.bar(
                [x for x, _ in shown],
                [v for _, v in shown],
                width,
                label=name,
                color=_colour(index),
            )
            ax.bar_label(bars, labels=[_short(v) for _, v in shown], fontsize=8, padding=2)
        ax.set_xticks(range(len(groups)), list(groups))
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left")
        ax.grid(axis="x", visible=False)
        return save(fig, path)


def median(values: Sequence[float]) -> float:
    """The p50 the benchmarks print: a sample, by ``bench/pod_start.py``'s rank rule."""
    return percentile(values, 50)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank, the same rule as ``pod_start.percentile``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _short(value: float) -> str:
    """12,345 → "12.3k"; 950 → "950"; 0.5 → "0.5"."""
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"
