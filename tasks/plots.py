"""Evaluation plots as PNG files (ROC, precision-recall, teacher vs student scores)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from anomaly_distill.metrics import UNLABELLED  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_plots(y: np.ndarray, teacher: np.ndarray, student: np.ndarray, out: Path) -> list[Path]:
    """ROC and precision-recall curves over the labelled rows (a row nobody reviewed is neither class)."""
    known = np.asarray(y) != UNLABELLED
    y, teacher, student = np.asarray(y)[known], np.asarray(teacher)[known], np.asarray(student)[known]
    roc, ax = plt.subplots(figsize=(5, 4))
    pr, ax2 = plt.subplots(figsize=(5, 4))
    for name, scores in (("teacher", teacher), ("student", student)):
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, scores)
        ax2.plot(recall, precision, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held-out rows)")
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall (held-out rows)")
    ax.legend(), ax2.legend()
    return [_save(roc, out / "roc.png"), _save(pr, out / "pr.png")]


def score_plot(teacher: np.ndarray, student: np.ndarray, y: np.ndarray | None, out: Path) -> Path:
    fig, (scatter, hist) = plt.subplots(1, 2, figsize=(10, 4))
    colors = None if y is None else np.where(y == 1, "tab:red", "tab:blue")
    scatter.scatter(teacher, student, s=4, c=colors, alpha=0.5)
    scatter.set(xlabel="teacher score", ylabel="student score", title="Teacher vs student (red: anomaly)")
    hist.hist(student, bins=60, color="tab:gray")
    hist.set(xlabel="student score", ylabel="rows", title="Student score distribution")
    return _save(fig, out / "teacher_vs_student.png")
