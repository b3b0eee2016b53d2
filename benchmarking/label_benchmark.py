"""The pure pieces of `make bench-labels` (benchmarks/labels.py): who is labelled, how the feedback loop picks rows,
how a default is selected across sets, and the tables.

ADBench's semi-supervised protocol: a share of the training split's anomalies is labelled (at least one), every other
training row is unlabelled (-1); the test rows keep every label for scoring. The labelled anomalies of a smaller share
are a subset of a larger share's (one permutation per split), so the shares differ only in how many labels they give.
"""

from collections.abc import Iterable

import numpy as np

from benchmarking.benchmark_summary import TIE, average_ranks, set_means, wilcoxon_p, win_tie_loss

UNLABELLED = -1  # anomaly_distill.data.UNLABELLED: a row nobody has reviewed
REFERENCE = "student"
TEACHER_GAP = 0.01  # "student >= teacher - 0.01", as in the unlabelled benchmark


def n_labelled(n_anomalies: int, fraction: float) -> int:
    """How many of `n_anomalies` training anomalies a `fraction` labels: rounded, at least one, at most all."""
    if n_anomalies < 1:
        raise ValueError("the training rows hold no anomaly to label")
    return int(min(n_anomalies, max(1, round(fraction * n_anomalies))))


def partial_labels(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """int8 labels for training rows with true labels `y`: 1 for the labelled anomalies, -1 for every other row.
    Nested across fractions for one seed (the first n of one permutation of the anomalies)."""
    anomalies = np.flatnonzero(np.asarray(y) == 1)
    order = np.random.default_rng(seed).permutation(anomalies)
    labels = np.full(len(y), UNLABELLED, dtype=np.int8)
    labels[order[: n_labelled(len(anomalies), fraction)]] = 1
    return labels


def pu_targets(labels: np.ndarray) -> np.ndarray:
    """Positive-unlabelled targets for the supervised peers: labelled anomalies 1, everything else 0."""
    return (np.asarray(labels) == 1).astype(np.int64)


# --- feedback loop -------------------------------------------------------------------------------------------


def review_size(n_train: int, share: float = 0.01) -> int:
    """Rows a reviewer labels per round: `share` of the training rows, at least one."""
    return max(1, int(round(share * n_train)))


def random_queue(reviewed: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k unreviewed rows drawn uniformly: the 'random review' baseline of the feedback loop."""
    pool = np.flatnonzero(~np.asarray(reviewed, dtype=bool))
    return np.sort(rng.choice(pool, min(k, len(pool)), replace=False))


def queue_precision(y: np.ndarray, queue: np.ndarray) -> float:
    """Share of anomalies among the queued rows (what a reviewer's time bought)."""
    return float(np.mean(np.asarray(y)[queue] == 1)) if len(queue) else float("nan")


def label_rows(labels: np.ndarray, y: np.ndarray, queue: np.ndarray) -> np.ndarray:
    """The oracle: the queued rows get their true labels (0 or 1); a copy, `labels` is left alone."""
    labelled = labels.copy()
    labelled[queue] = np.asarray(y)[queue]
    return labelled


# --- selection across sets only ------------------------------------------------------------------------------


def set_folds(sets: Iterable[str], n_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Sets shuffled (fixed seed) and dealt into `n_folds` folds of (nearly) equal size."""
    names = sorted(set(sets))
    if len(names) < n_folds:
        raise ValueError(f"{len(names)} sets cannot make {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names[i] for i in order[f::n_folds]) for f in range(n_folds)]


def leave_sets_out(scores: list[dict], n_folds: int = 5, seed: int = 0, metric: str = "score") -> dict:
    """Select a setting across sets only: each fold of sets is held out in turn, the setting with the best mean
    (seed means, then over sets) on the other folds is picked and scored on the held-out sets. `scores`: dicts with
    dataset, seed, setting and `metric`. No row of a held-out set ever takes part in choosing what it is scored with.

    Returns the folds (held-out sets, chosen setting, its in-fold and held-out mean), the out-of-fold score of
    every set, their mean (the honest estimate of the selection), and each setting's plain mean for comparison
    (which is what choosing on all sets at once would report, optimistically)."""
    table: dict[str, dict[str, list[float]]] = {}
    for s in scores:
        table.setdefault(s["setting"], {}).setdefault(s["dataset"], []).append(float(s[metric]))
    means = {setting: {d: float(np.mean(v)) for d, v in by.items()} for setting, by in table.items()}
    sets = sorted(set.intersection(*(set(by) for by in means.values())))
    settings = sorted(means)
    folds, out_of_fold = [], {}
    for held_out in set_folds(sets, n_folds, seed):
        inside = [d for d in sets if d not in held_out]
        in_fold = {s: float(np.mean([means[s][d] for d in inside])) for s in settings}
        chosen = max(settings, key=lambda s: (in_fold[s], -settings.index(s)))  # ties: the first by name
        for d in held_out:
            out_of_fold[d] = (chosen, means[chosen][d])
        folds.append(
            {
                "held_out": held_out,
                "chosen": chosen,
                "in_fold_mean": in_fold[chosen],
                "held_out_mean": float(np.mean([means[chosen][d] for d in held_out])),
            }
        )
    return {
        "n_folds": n_folds,
        "folds": folds,
        "per_set": {d: {"setting": s, metric: v} for d, (s, v) in sorted(out_of_fold.items())},
        "out_of_fold_mean": float(np.mean([v for _, v in out_of_fold.values()])),
        "setting_means": {s: float(np.mean([means[s][d] for d in sets])) for s in settings},
        "sets": len(sets),
    }


def format_selection(result: dict, metric_name: str = "AUROC") -> str:
    lines = [
        f"Leave-sets-out selection over {result['sets']} sets, {result['n_folds']} folds: out-of-fold mean "
        f"{metric_name} **{result['out_of_fold_mean']:.4f}**",
        "",
        f"| fold | held-out sets | chosen on the other sets | in-fold mean | held-out mean {metric_name} |",
        "|---|---|---|---|---|",
    ]
    for i, f in enumerate(result["folds"]):
        lines.append(
            f"| {i + 1} | {', '.join(f['held_out'])} | {f['chosen']} | {f['in_fold_mean']:.4f} "
            f"| {f['held_out_mean']:.4f} |"
        )
    lines += ["", f"| setting | mean {metric_name} on all sets (in-sample: optimistic for the best) |", "|---|---|"]
    lines += [f"| {s} | {m:.4f} |" for s, m in sorted(result["setting_means"].items(), key=lambda x: -x[1])]
    return "\n".join(lines)


# --- tables --------------------------------------------------------------------------------------------------


def ordered(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def complete_methods(records: list[dict]) -> tuple[list[str], list[str]]:
    """Methods with a result on every (set, seed) of `records`, and those missing some."""
    cells = {(r["dataset"], r["seed"]) for r in records}
    methods = ordered(r["method"] for r in records)
    have = {m: {(r["dataset"], r["seed"]) for r in records if r["method"] == m} for m in methods}
    return [m for m in methods if have[m] == cells], [m for m in methods if have[m] != cells]


def compare(records: list[dict], reference: str = REFERENCE, tie: float = TIE) -> list[dict]:
    """One row per method over the sets where it ran on every seed: mean AUROC/AUPRC (seed means, then sets), the
    reference's win/tie/loss and Wilcoxon p against it on the same sets, and (complete methods only) average rank."""
    complete, partial = complete_methods(records)
    auroc, auprc = set_means(records, "auroc"), set_means(records, "auprc")
    seeds = {d: {r["seed"] for r in records if r["dataset"] == d} for d in auroc}
    ranks = average_ranks({d: {m: auroc[d][m] for m in complete} for d in auroc}, complete) if complete else {}
    rows = []
    for m in complete + partial:
        sets = [
            d
            for d in auroc
            if m in auroc[d] and {r["seed"] for r in records if r["dataset"] == d and r["method"] == m} == seeds[d]
        ]
        if not sets:
            rows.append({"method": m, "sets": 0})
            continue
        ours = np.array([auroc[d][reference] for d in sets])
        theirs = np.array([auroc[d][m] for d in sets])
        row = {
            "method": m,
            "sets": len(sets),
            "mean_auroc": float(theirs.mean()),
            "mean_auprc": float(np.mean([auprc[d][m] for d in sets])),
            "reference_auroc_same_sets": float(ours.mean()),
            "average_rank": ranks.get(m),
        }
        if m != reference:
            row["win_tie_loss"] = win_tie_loss(ours, theirs, tie)
            row["wilcoxon_p"] = wilcoxon_p(ours, theirs)
        rows.append(row)
    return rows


def near_teacher(records: list[dict], student: str = REFERENCE, teacher: str = "teacher") -> tuple[int, int]:
    """Sets (seed means) where the student's AUROC >= its teacher's - 0.01, and the sets compared."""
    auroc = set_means(records, "auroc")
    pairs = [by for by in auroc.values() if student in by and teacher in by]
    return sum(by[student] >= by[teacher] - TEACHER_GAP for by in pairs), len(pairs)


def format_compare(rows: list[dict], n_sets: int, reference: str = REFERENCE) -> str:
    lines = [
        f"| method | sets | mean AUROC | mean AUPRC | avg rank | {reference} AUROC on those sets "
        f"| {reference} win/tie/loss | Wilcoxon p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["sets"]:
            lines.append(f"| {r['method']} | 0 | — | — | — | — | — | — |")
            continue
        rank = "—" if r["average_rank"] is None else f"{r['average_rank']:.2f}"
        wtl = "/".join(map(str, r["win_tie_loss"])) if "win_tie_loss" in r else "—"
        p = f"{r['wilcoxon_p']:.3g}" if "wilcoxon_p" in r else "—"
        sets = f"{r['sets']}" if r["sets"] == n_sets else f"**{r['sets']}**"
        lines.append(
            f"| {r['method']} | {sets} | {r['mean_auroc']:.4f} | {r['mean_auprc']:.4f} | {rank} "
            f"| {r['reference_auroc_same_sets']:.4f} | {wtl} | {p} |"
        )
    return "\n".join(lines)


def by_fraction(records: list[dict], fractions: list[float]) -> dict[float, list[dict]]:
    """Records of each fraction; a label-free method's record (fraction None) counts under every fraction."""
    return {
        f: [{**r, "fraction": f} for r in records if r["fraction"] is None or np.isclose(r["fraction"], f)]
        for f in fractions
    }


# --- feedback summaries --------------------------------------------------------------------------------------


def feedback_table(rows: list[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """{strategy: {round: mean over sets (of seed means) of auroc, auprc, queue precision}}."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for strategy in ordered(r["strategy"] for r in rows):
        out[strategy] = {}
        for rnd in sorted({r["round"] for r in rows if r["strategy"] == strategy}):
            these = [r for r in rows if r["strategy"] == strategy and r["round"] == rnd]
            out[strategy][rnd] = {
                key: float(np.nanmean(list(_set_mean(these, key).values())))
                for key in ("auroc", "auprc", "precision")
                if any(r.get(key) is not None for r in these)
            }
    return out


def _set_mean(rows: list[dict], key: str) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get(key) is not None:
            by.setdefault(r["dataset"], []).append(r[key])
    return {d: float(np.mean(v)) for d, v in by.items()}


def feedback_gains(rows: list[dict], last_round: int, baseline: str = "random", tie: float = TIE) -> dict[str, dict]:
    """Per strategy: mean over sets of AUPRC(last round) ÷ AUPRC(round 0) (seed means per set), the same as a
    ratio of means, and win/tie/loss of its last-round AUPRC against `baseline`'s on the same sets."""
    start = _set_mean([r for r in rows if r["round"] == 0], "auprc")
    last = {
        s: _set_mean([r for r in rows if r["strategy"] == s and r["round"] == last_round], "auprc")
        for s in ordered(r["strategy"] for r in rows)
    }
    gains = {}
    for strategy, end in last.items():
        sets = [d for d in end if d in start]
        if not sets:
            continue
        ratios = [end[d] / start[d] for d in sets if start[d] > 0]
        row = {
            "sets": len(sets),
            "mean_ratio": float(np.mean(ratios)) if ratios else float("nan"),
            "ratio_of_means": float(np.mean([end[d] for d in sets]) / np.mean([start[d] for d in sets])),
        }
        if strategy != baseline and baseline in last:
            common = [d for d in sets if d in last[baseline]]
            a, b = np.array([end[d] for d in common]), np.array([last[baseline][d] for d in common])
            row["vs_" + baseline] = win_tie_loss(a, b, tie)
            row["wilcoxon_p"] = wilcoxon_p(a, b) if len(common) > 1 else float("nan")
        gains[strategy] = row
    return gains


def ascii_curve(table: dict[str, dict[int, dict[str, float]]], key: str = "auprc") -> str:
    """The feedback curve as text: one line per strategy, the mean per round."""
    rounds = sorted({r for by in table.values() for r in by})
    lines = ["| strategy | " + " | ".join(f"round {r}" for r in rounds) + " |", "|---|" + "---|" * len(rounds)]
    for strategy, by in table.items():
        lines.append(
            f"| {strategy} | "
            + " | ".join(f"{by[r][key]:.4f}" if r in by and key in by[r] else "—" for r in rounds)
            + " |"
        )
    return "\n".join(lines)
