"""Choose the ensemble teacher's members and combination rule on the selection seed, across sets.

Reads the cached member scores (member_scores.py) and scores every candidate (member set x rule) on every set's
test rows of the selection split. Reports each candidate's mean AUROC and average rank over the sets, and a
leave-one-set-out estimate of the selection itself: for each set, the candidate best on the other sets is
picked and its AUROC on the left-out set recorded (what choosing this way is worth on a set it did not see).
Usage: python benchmarks/selection/choose_teacher.py CACHE_DIR [CACHE_DIR ...] [--json OUT]
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from anomaly_distill.models.teachers import combine_members

MEMBERS = ("iforest", "ecod", "copod", "hbos", "knn", "lof")
MEMBER_SETS = {
    "iforest+ecod+knn": ("iforest", "ecod", "knn"),
    "iforest+ecod+copod+hbos+knn": ("iforest", "ecod", "copod", "hbos", "knn"),
    "all six": MEMBERS,
    "iforest+knn": ("iforest", "knn"),
    "iforest+hbos+knn": ("iforest", "hbos", "knn"),
}
RULES = ("mean", "median", "max", "fisher", "agreement", "most_agreeing")


def candidates():
    return [(f"{s} / {r}", MEMBER_SETS[s], r) for s, r in itertools.product(MEMBER_SETS, RULES)]


def aurocs(caches: list[Path]) -> tuple[list[str], dict[str, np.ndarray]]:
    """AUROC of every candidate and member on every (set, selection seed), in set order then seed order."""
    pairs = [(c, p.stem) for p in sorted(caches[0].glob("*.npz")) for c in caches]
    sets = [s for _, s in pairs]
    table = {name: [] for name, _, _ in candidates()}
    table.update({m: [] for m in MEMBERS})
    for cache, s in pairs:
        data = np.load(cache / f"{s}.npz")
        for j, m in enumerate(MEMBERS):
            table[m].append(roc_auc_score(data["y"], data["test"][:, j]))
        for name, members, rule in candidates():
            cols = [MEMBERS.index(m) for m in members]
            score = combine_members(data["test"][:, cols], data["train"][:, cols], rule)
            table[name].append(roc_auc_score(data["y"], score))
    return sets, {k: np.asarray(v) for k, v in table.items()}


def leave_one_set_out(table: dict[str, np.ndarray], names: list[str], sets: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per set: the candidate best on all other sets (every selection seed of them), scored on this set."""
    scores = np.array([table[n] for n in names])  # candidates x (set, seed)
    labels = np.asarray(sets)
    chosen, picked = [], []
    for s in dict.fromkeys(sets):
        held = labels == s
        best = int(np.argmax(scores[:, ~held].mean(axis=1)))
        chosen.append(scores[best, held].mean())
        picked.append(names[best])
    return np.asarray(chosen), picked


def main(argv: list[str]) -> None:
    caches = [Path(a) for a in argv if not a.startswith("--") and Path(a).is_dir()]
    sets, table = aurocs(caches)
    names = [n for n, _, _ in candidates()]
    ranks = np.array([rankdata([-table[n][i] for n in names + list(MEMBERS)]) for i in range(len(sets))]).mean(0)
    rank_of = dict(zip(names + list(MEMBERS), ranks))
    per_set_best = np.maximum(table["iforest"], table["ecod"]).mean()
    print(f"per-(set, seed) better of IForest/ECOD: {per_set_best:.4f}")
    print(f"{len(set(sets))} sets x {len(caches)} selection splits\n")
    print("| candidate | mean AUROC | avg rank |\n|---|---|---|")
    for n in sorted(names + list(MEMBERS), key=lambda n: -table[n].mean()):
        print(f"| {n} | {table[n].mean():.4f} | {rank_of[n]:.2f} |")
    loso, picked = leave_one_set_out(table, names, sets)
    best = max(names, key=lambda n: table[n].mean())
    print(
        f"\nleave-one-set-out: mean AUROC of the candidate chosen without the set {loso.mean():.4f}; "
        f"picks: {sorted(set(picked))}"
    )
    print(
        f"chosen on all sets: {best} ({table[best].mean():.4f}); best member "
        f"{max(MEMBERS, key=lambda m: table[m].mean())} ({max(table[m].mean() for m in MEMBERS):.4f})"
    )
    if "--json" in argv:
        out = {
            "sets": sets,
            "aurocs": {k: v.tolist() for k, v in table.items()},
            "loso": loso.tolist(),
            "loso_picks": picked,
            "chosen": best,
        }
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
