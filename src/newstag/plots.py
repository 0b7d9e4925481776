"""Figures people would rather see than read: grid-search scores and confusion matrices."""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def grid_figure(task: str, candidates: list[dict]):
    """Validation macro-F1 of every grid candidate, best highlighted."""
    labels = [", ".join(f"{k}={v}" for k, v in c["params"].items()) or "defaults" for c in candidates]
    scores = [c["f1_macro"] for c in candidates]
    best = scores.index(max(scores))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(scores) + 1.5))
    colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(scores))]
    ax.barh(labels, scores, color=colors)
    ax.set_xlim(0, 1)
    ax.set_xlabel("validation macro-F1")
    ax.set_title(f"{task}: grid search (best in orange)")
    fig.tight_layout()
    return fig


def confusion_figure(task: str, y_true, y_pred, labels: list[str]):
    """Confusion matrix with counts; rows are the true labels."""
    size = max(4.5, 0.8 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=labels, ax=ax,
                                            colorbar=False, xticks_rotation=45)
    ax.set_title(f"{task}: confusion matrix (test split)")
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Save a figure as PNG and free its memory."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
