"""Statistics across sets and seeds: what tells a better recipe from luck.

Per set: mean ± std over seeds. Across sets: mean AUROC/AUPRC, ADBench-style average rank (rank the methods on
each set by their seed-mean AUROC, 1 = best, ties share the mean rank, then average over sets) and, for the
student against each other method, win/tie/loss over sets with a two-sided Wilcoxon signed-rank p-value.
"""

import numpy as np
from scipy.stats import rankdata, wilcoxon

TIE = 0.001  # AUROC differences smaller than this count as a tie


def ordered(values) -> list:
    return list(dict.fromkeys(values))


def per_set(records: list[dict], metric: str = "auroc") -> dict[str, dict[str, np.ndarray]]:
    """{dataset: {method: the metric on each seed, in seed order}}."""
    table: dict[str, dict[str, list]] = {}
    for r in sorted(records, key=lambda r: r.get("seed", 0)):
        table.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r[metric])
    return {d: {m: np.asarray(v, dtype=float) for m, v in by.items()} for d, by in table.items()}


def set_means(records: list[dict], metric: str = "auroc") -> dict[str, dict[str, float]]:
    return {d: {m: float(v.mean()) for m, v in by.items()} for d, by in per_set(records, metric).items()}


def average_ranks(means: dict[str, dict[str, float]], methods: list[str]) -> dict[str, float]:
    ranks = np.array([rankdata([-means[d][m] for m in methods]) for d in means])
    return dict(zip(methods, ranks.mean(axis=0).tolist()))


def win_tie_loss(a: np.ndarray, b: np.ndarray, tie: float = TIE) -> tuple[int, int, int]:
    diff = np.asarray(a) - np.asarray(b)
    return int((diff >= tie).sum()), int((np.abs(diff) < tie).sum()), int((diff <= -tie).sum())


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided signed-rank p-value of a − b (1.0 when the two never differ)."""
    if np.allclose(a, b):
        return 1.0
    return float(wilcoxon(a, b).pvalue)


def summary(records: list[dict], reference: str = "student") -> list[dict]:
    """One row per method: mean AUROC/AUPRC over sets (of seed means), average rank, and the reference
    method's win/tie/loss and Wilcoxon p against it."""
    methods = ordered(r["method"] for r in records)
    auroc, auprc = set_means(records, "auroc"), set_means(records, "auprc")
    sets = list(auroc)
    ranks = average_ranks(auroc, methods)
    ref = np.array([auroc[d][reference] for d in sets])
    rows = []
    for m in methods:
        scores = np.array([auroc[d][m] for d in sets])
        row = {
            "method": m,
            "mean_auroc": float(scores.mean()),
            "mean_auprc": float(np.mean([auprc[d][m] for d in sets])),
            "average_rank": ranks[m],
        }
        if m != reference:
            row["win_tie_loss"] = win_tie_loss(ref, scores)
            row["wilcoxon_p"] = wilcoxon_p(ref, scores)
        rows.append(row)
    return rows


def mean_std(values: np.ndarray, digits: int = 3) -> str:
    return f"{values.mean():.{digits}f}±{values.std():.{digits}f}"


def format_summary(rows: list[dict], reference: str = "student") -> str:
    lines = [
        f"| method | mean AUROC | mean AUPRC | avg rank | {reference} win/tie/loss | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        wtl = "/".join(map(str, r["win_tie_loss"])) if "win_tie_loss" in r else "—"
        p = f"{r['wilcoxon_p']:.3g}" if "wilcoxon_p" in r else "—"
        lines.append(
            f"| {r['method']} | {r['mean_auroc']:.4f} | {r['mean_auprc']:.4f} | {r['average_rank']:.2f} | {wtl} | {p} |"
        )
    return "\n".join(lines)


def format_per_set(records: list[dict]) -> str:
    """AUROC mean±std over seeds for every method on every set."""
    methods = ordered(r["method"] for r in records)
    table = per_set(records)
    lines = ["| set | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for d, by in table.items():
        lines.append(f"| {d} | " + " | ".join(mean_std(by[m]) for m in methods) + " |")
    return "\n".join(lines)
