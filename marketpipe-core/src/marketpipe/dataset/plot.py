"""The coverage picture: symbols x months, coloured by the share of sessions stored.

Drawn with matplotlib: the plotting library every Python data user already has, maintained for
two decades, writing PNG and SVG itself with no browser or server (an HTML file embeds the SVG).
It is an optional extra (``pip install "marketpipe-core[plot]"``): ingesting never imports it.

Red is a month with no session stored, green a month with every session stored (between the
series' first and last day), so gaps stand out. With more symbols than fit as rows, neighbouring
symbols are grouped into one row (their average), labelled with the first and last symbol and how many.
"""

from __future__ import annotations

import datetime as dt
import io
from html import escape
from pathlib import Path

import numpy as np

from marketpipe.model.calendar import TradingCalendar
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.values import Series
from marketpipe.storage.catalog import Catalog

MAX_ROWS = 60
FORMATS = (".png", ".svg", ".html")


def coverage_matrix(
    catalog: Catalog, series: Series, calendar: TradingCalendar, symbols: set[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Row labels, month labels and the share of each month's sessions stored, per symbol (or
    group of symbols when there are more than ``MAX_ROWS``)."""
    names, cols = catalog.partitions(series)
    keep = [i for i, n in enumerate(names) if not symbols or n in symbols]
    if not keep:
        return [], [], np.zeros((0, 0))
    mask = np.isin(cols["symbol"], keep)
    days = cols["day"][mask]
    first, last = int(days.min()), int(days.max())
    sessions = calendar.arrays.ordinals
    span = sessions[(sessions >= first) & (sessions <= last)]
    month_of = np.array([_month(d) for d in span.tolist()], dtype=np.int64)
    months = np.unique(month_of)
    per_month = np.array([(month_of == m).sum() for m in months], dtype=np.float64)
    column = np.searchsorted(months, [_month(d) for d in days.tolist()])
    row_of = {s: r for r, s in enumerate(keep)}
    rows = np.array([row_of[s] for s in cols["symbol"][mask].tolist()], dtype=np.int64)
    counts = np.zeros((len(keep), len(months)))
    np.add.at(counts, (rows, column), 1)
    share = counts / per_month
    labels = [names[i] for i in keep]
    if len(keep) > MAX_ROWS:
        groups = np.array_split(np.arange(len(keep)), MAX_ROWS)
        share = np.vstack([share[g].mean(axis=0) for g in groups])
        labels = [f"{labels[g[0]]}..{labels[g[-1]]} ({len(g)})" for g in groups]
    return labels, [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months.tolist()], share


def _month(ordinal: int) -> int:
    day = dt.date.fromordinal(ordinal)
    return day.year * 12 + day.month - 1


def draw(panels: list[tuple[Series, list[str], list[str], np.ndarray]], path: Path) -> None:
    """Write the picture of ``panels`` (one per series) to ``path`` (.png, .svg or .html)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInputError(f"--plot {path}: use a .png, .svg or .html file name")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError(
            'the coverage picture needs matplotlib: pip install "marketpipe-core[plot]"'
        ) from None
    rows = sum(max(1, len(p[1])) for p in panels)
    width = max(6.0, min(16.0, 2.5 + 0.35 * max(len(p[2]) for p in panels)))
    height = 1.2 * len(panels) + 0.22 * rows + 0.6
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(width, height),
        squeeze=False,
        gridspec_kw={"height_ratios": [max(1, len(p[1])) for p in panels]},
    )
    for ax, (series, labels, months, share) in zip(axes[:, 0], panels, strict=True):
        ax.imshow(share, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_title(f"{series}: share of sessions stored per month", fontsize=9, loc="left")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        step = max(1, len(months) // 24)
        ticks = list(range(0, len(months), step))
        ax.set_xticks(ticks, [months[i] for i in ticks], fontsize=7, rotation=90)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout()
    if suffix == ".html":
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        title = ", ".join(str(p[0]) for p in panels)
        path.write_text(
            "<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<title>Coverage: {escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'><h1>Coverage</h1>{buffer.getvalue()}"
            "<p>Green: every session of the month stored; red: none.</p></body></html>\n",
            encoding="utf-8",
        )
    else:
        fig.savefig(path, dpi=100)
    plt.close(fig)
