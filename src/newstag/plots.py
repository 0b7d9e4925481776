"""Figures people would rather see than read: grid-search scores and confusion matrices."""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def grid_figure(task: str, candidates: list[dict]):
    """Macro-F1 of every candidate, sorted, values printed, the chosen one in orange; the axis starts
    where the scores do, so close candidates do not all look equal."""
    labels = [", ".join(f"{k}={v}" for k, v in c["params"].items()) or "defaults" for c in candidates]
    scores = [c["f1_macro"] for c in candidates]
    chosen = next((i for i, c in enumerate(candidates) if c.get("chosen")), scores.index(max(scores)))
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(scores) + 1.6))
    ax.barh([labels[i] for i in order], [scores[i] for i in order],
            color=["tab:orange" if i == chosen else "tab:blue" for i in order])
    for row, i in enumerate(order):
        ax.text(scores[i], row, f" {scores[i]:.4f}", va="center", fontsize=9)
    low, high = min(scores), max(scores)
    pad = max((high - low) * 0.2, 0.005)
    ax.set_xlim(max(0.0, low - pad), min(1.0, high + 3 * pad) if high < 1 else 1.0 + pad)
    ax.set_xlabel("macro-F1 (validation split; inner cross-validation for auto)")
    ax.set_title(f"{task}: candidates, chosen in orange")
    fig.tight_layout()
    return fig


CONFUSION_INCHES = 9.5  # at most: about the report's full width at save_figure's dpi
CONFUSION_VALUES = 40  # labels; with more, the cells are too small for their counts


def confusion_figure(task: str, confusion, labels: list[str]):
    """Confusion matrix with counts (rows are the true labels, in the order of `labels`). A
    matrix of many labels is drawn no larger than the report shows it, its text made smaller to
    fit: 20 Newsgroups drawn at 0.8 inch a label (1980 pixels) was shown shrunk to half, its
    counts and labels unreadable."""
    n = len(labels)
    size = min(max(4.5, 0.8 * n + 2), CONFUSION_INCHES)
    fontsize = 10 if n <= 10 else max(6.5, 10 - (n - 10) / 4)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(confusion, display_labels=labels).plot(
        ax=ax, colorbar=False, xticks_rotation=45, include_values=n <= CONFUSION_VALUES,
        text_kw={"fontsize": fontsize})
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")  # each ends under its column
    ax.tick_params(labelsize=max(fontsize, 8))
    ax.set_title(f"{task}: confusion matrix (test split)")
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Save a figure as PNG, whole or not at all (through a temporary file, like every file newstag
    writes), and free its memory."""
    from newstag.data.files import atomic_path

    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=110, format="png")
    finally:
        plt.close(fig)


def search_figure(task: str, rows: list[dict], scoring: str, chosen: int, top: int = 30):
    """The search's finished candidates, best first: mean CV score with its value printed and a
    bar for the fold spread (± sd). The axis starts where the data does, so differences show."""
    rows = sorted((r for r in rows if r["state"] == "complete"), key=lambda r: -r["cv_mean"])[:top]
    labels = [_candidate_label(r) for r in rows][::-1]
    means = [r["cv_mean"] for r in rows][::-1]
    sds = [r["cv_sd"] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.6))
    numbers = [r["number"] for r in rows][::-1]
    colors = ["tab:orange" if number == chosen else "tab:blue" for number in numbers]
    ax.errorbar(means, range(len(rows)), xerr=sds, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(means, range(len(rows)), color=colors, zorder=3)
    for y, (mean, sd) in enumerate(zip(means, sds, strict=True)):
        ax.annotate(f"{mean:.4f} ± {sd:.4f}", (mean + sd, y), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    if rows:
        low = min(m - s for m, s in zip(means, sds, strict=True))
        high = max(m + s for m, s in zip(means, sds, strict=True))
        pad = max(high - low, 0.01)
        ax.set_xlim(low - 0.05 * pad, high + 0.35 * pad)  # room on the right for the values
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel(f"mean CV {scoring} (bars: ± sd over folds)")
    ax.set_title(f"{task}: search candidates, best first (chosen in orange)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _candidate_label(row: dict) -> str:
    import json

    params = json.loads(row["params"])
    shown = ", ".join(f"{key.split('__')[-1]}={_short(value)}" for key, value in params.items())
    return f"#{row['number']} {row['classifier']} {row['features']}" + (f" ({shown})" if shown else "")


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


HALF_WIDTH = 5.4  # inches: the report shows two figures a row, each about 530 pixels wide
FEW_ARTICLES = 3  # a reliability bin with fewer articles is drawn hollow, without its value
MIN_ACCURACY_SPAN = 0.1  # the coverage plot's accuracy axis spans at least this much


def reliability_figure(task: str, tables: dict[str, list[dict]], eces: dict[str, float]):
    """Reliability diagram: per confidence bin, accuracy against mean confidence, for the
    calibrated and the uncalibrated scores; the diagonal is perfect calibration. A point's area
    grows with its bin's articles and the points are not joined, so that a bin of one article
    (right or wrong: 1.00 or 0.00) reads as the anecdote it is; bins under FEW_ARTICLES are
    hollow and unlabelled. Below, the number of test articles per bin."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(HALF_WIDTH, 7), height_ratios=[3, 1.2], sharex=True)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    styles = {"calibrated": ("tab:blue", "o"), "uncalibrated": ("tab:orange", "s")}
    table = next(iter(tables.values()))
    total = max(sum(row["count"] for row in table), 1)
    values = []
    for offset, (name, table) in enumerate(tables.items()):
        color, marker = styles.get(name, ("tab:green", "^"))
        ax.scatter([], [], marker=marker, color=color, label=f"{name} (ECE {eces[name]:.3f})")
        for row in (row for row in table if row["count"]):
            x, y, few, size = row["confidence"], row["accuracy"], row["count"] < FEW_ARTICLES, \
                20 + 400 * row["count"] / total
            ax.scatter([x], [y], s=size, marker=marker, alpha=0.8, facecolors="none" if few else color,
                       edgecolors=color, zorder=3)
            values.append((x, y, None if few else f"{y:.2f}", color, size ** 0.5 / 2))
        _count_bars(counts, table, (offset - 0.5) / len(table) / 2, color, name)
    ax.set_xlim(0, 1.04)  # a bin at confidence 1 keeps its whole marker inside the frame
    ax.set_ylim(-0.05, 1.08)  # and so does a bin all right or all wrong
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"{task}: reliability (test split, confidence of the chosen label,\n"
                 f"{len(table)} bins; area: articles in the bin, hollow: fewer than {FEW_ARTICLES})",
                 pad=24, fontsize=10)
    # above the plot, under the title: inside, any corner can hide a point (a wrong bin sits at 0)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False,
              handletextpad=0.2, columnspacing=1.0)
    ax.grid(alpha=0.3)
    counts.set_xlabel("confidence of the chosen label")
    counts.set_ylabel("articles")
    counts.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    label_points(ax, values)  # once the layout is final: it measures the labels on the canvas
    return fig


def _count_bars(ax, table: list[dict], shift: float, color: str, name: str) -> None:
    """One series' articles per bin, half a bin wide, each bar's count printed above it (upright
    while every count fits over its bar, turned when a count has three digits or more)."""
    width = 1 / max(len(table), 1)
    centres = [(row["low"] + row["high"]) / 2 + shift for row in table]
    ax.bar(centres, [row["count"] for row in table], width=width / 2, color=color, label=name)
    turned = max((row["count"] for row in table), default=0) >= 100
    for x, row in zip(centres, table, strict=True):
        if row["count"]:
            ax.annotate(str(row["count"]), (x, row["count"]), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8, rotation=90 if turned else 0)
    ax.margins(y=0.35 if turned else 0.2)  # room above the tallest bar for its count


LABEL_GAP = 2  # points between a marker's edge and its value


def label_points(ax, points: list[tuple]) -> None:
    """Value labels of (x, y, text, color, marker radius in points): each on the first side of its
    point (above, below, right, left, a corner) where it stays inside the axes and clear of every marker
    and the labels already placed, or else where it overlaps least. Fixed offsets drew one
    series' values over the other's and the top bin's value over the frame."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [_marker_box(ax, x, y, radius) for x, y, _, _, radius in points]
    for x, y, text, color, radius in points:
        if text is None:
            continue
        best = None
        for dx, dy, ha, va in _sides(radius + LABEL_GAP):
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha,
                                va=va, fontsize=8, color=color)
            box = label.get_window_extent(renderer)
            crowding = sum(_overlap(box, other) for other in taken) + \
                (0 if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) else 1e9)
            if best is not None and crowding >= best[0]:
                label.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (crowding, label, box)
            if crowding == 0:
                break
        taken.append(best[2])


def _sides(gap: float) -> list[tuple]:
    """Above, below, right, left, then the four corners, as annotate's offsets and alignment."""
    corner = gap * 0.7
    return [(0, gap, "center", "bottom"), (0, -gap, "center", "top"),
            (gap, 0, "left", "center"), (-gap, 0, "right", "center"),
            (corner, corner, "left", "bottom"), (-corner, corner, "right", "bottom"),
            (corner, -corner, "left", "top"), (-corner, -corner, "right", "top")]


def _marker_box(ax, x: float, y: float, radius: float):
    from matplotlib.transforms import Bbox

    cx, cy = ax.transData.transform((x, y))
    r = radius * ax.figure.dpi / 72
    return Bbox([[cx - r, cy - r], [cx + r, cy + r]])


def _overlap(a, b) -> float:
    """The area two display boxes share."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


MARK_STYLES = (("tab:red", "o"), ("tab:purple", "D"), ("tab:green", "^"))


def coverage_figure(task: str, curves: dict[str, tuple], marks: dict[str, tuple[float, float]]):
    """Accuracy of the answered articles against the share answered, answering the most
    confident first; marks are chosen thresholds as (coverage, accuracy) points, their values in
    the legend below the axes (written beside the point they crossed the curves)."""
    fig, ax = plt.subplots(figsize=(HALF_WIDTH, 4.6 + 0.25 * len(marks)))
    for name, (coverage, accuracy) in curves.items():
        ax.plot(coverage, accuracy, label=name)
    for (name, (coverage, accuracy)), (color, marker) in zip(marks.items(), MARK_STYLES, strict=False):
        ax.scatter([coverage], [accuracy], zorder=3, color=color, marker=marker, edgecolors="white",
                   s=50, label=f"{name}: coverage {coverage:.2f}, accuracy {accuracy:.3f}")
    ax.set_xlim(0, 1.02)
    values = [float(value) for _, accuracy in curves.values() for value in accuracy if value == value]
    lowest = min(values + [mark[1] for mark in marks.values()], default=0.0)
    ax.set_ylim(min(lowest - 0.02, 1 - MIN_ACCURACY_SPAN), 1.005)  # 2-decimal ticks, not 0.9825
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel("coverage (share of test articles answered)")
    ax.set_ylabel("accuracy of the answered articles")
    ax.set_title(f"{task}: coverage and accuracy by confidence threshold (test split)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2 if not marks else 1,
              fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def label_f1_figure(task: str, per_label: dict):
    """A multi-label task's test F1 per label, best first, each bar's value and the label's test
    article count printed."""
    rows = sorted(per_label.items(), key=lambda item: (-item[1]["f1-score"], item[0]))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.5))
    scores = [values["f1-score"] for _, values in rows]
    ax.barh([label for label, _ in rows], scores, color="tab:blue")
    for y, (_, values) in enumerate(rows):
        ax.annotate(f"{values['f1-score']:.2f} (n={values['support']})", (values["f1-score"], y),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlim(0, 1.18)
    ax.set_xlabel("test F1 (n = test articles with the label)")
    ax.set_title(f"{task}: F1 per label (test split)")
    fig.tight_layout()
    return fig
