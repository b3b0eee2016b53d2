"""How the teacher's `label_prior` was chosen (issue 31): across sets only, never on a set's own rows.

For each (set, seed) of benchmarks/labels.py's splits (70/30, training rows capped at 20,000; test rows capped at
20,000 here, stratified, to keep the sweep short), the ensemble's members are fitted once without labels, then the
labelled part (models/labelled.py) is fitted for each share of labelled anomalies (1, 5, 25 %) and each candidate
prior, exactly as EnsembleTeacher.fit does. A setting's score on a (set, seed) is the teacher's test AUROC averaged
over the three shares. label_benchmark.leave_sets_out then picks the prior on 24 sets and scores it on the other 6,
five times: the out-of-fold mean is the honest figure, and the prior chosen most often becomes the default.

Usage: .venv/bin/python benchmarks/selection/label_prior.py ../shared/data/adbench/*.npz --json OUT.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labels import Split, cap_rows, ranking  # noqa: E402  (benchmarks/labels.py)

from anomaly_distill.config import TeacherConfig  # noqa: E402
from anomaly_distill.models.labelled import LabelledBlend, keep_labelled  # noqa: E402
from anomaly_distill.models.teachers import EnsembleTeacher  # noqa: E402
from benchmarking import label_benchmark as lb  # noqa: E402

PRIORS = (0.3, 1.0, 3.0, 10.0)
FRACTIONS = (0.01, 0.05, 0.25)


def sweep_split(path: str, seed: int) -> list[dict]:
    split = Split(path, seed, 20_000)
    test = cap_rows(split.test, 20_000, seed)
    X_test = split.pre.transform(test.features)
    config = TeacherConfig()
    teacher = EnsembleTeacher(config, seed).fit(split.X, None)
    test_members = teacher.member_scores(X_test)
    records = [{"setting": "no labels", **ranking(test.labels, teacher._unsupervised(test_members))}]
    for fraction in FRACTIONS:
        rows, y = keep_labelled(split.X, lb.partial_labels(split.y, fraction, seed), config.max_fit_rows, seed)
        members = teacher.member_scores(rows)
        for prior in PRIORS:
            blend = LabelledBlend(prior, seed).fit(rows, members, teacher._unsupervised(members), y)
            scores = blend.score(X_test, test_members, teacher._unsupervised(test_members))
            records.append({"setting": f"prior {prior:g}", "fraction": fraction, **ranking(test.labels, scores)})
    return [{"dataset": split.dataset, "seed": seed, **r} for r in records]


def per_setting(records: list[dict]) -> list[dict]:
    """One score per (set, seed, setting): the AUROC averaged over the shares (no labels: the one figure)."""
    grouped: dict[tuple, list[float]] = {}
    for r in records:
        grouped.setdefault((r["dataset"], r["seed"], r["setting"]), []).append(r["auroc"])
    return [{"dataset": d, "seed": s, "setting": t, "score": float(np.mean(v))} for (d, s, t), v in grouped.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json")
    args = parser.parse_args()
    started, records = time.time(), []
    for path in args.paths:
        for seed in args.seeds:
            records += sweep_split(path, seed)
            print(f"{Path(path).stem} seed {seed}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    choice = lb.leave_sets_out([r for r in per_setting(records) if r["setting"] != "no labels"])
    print(f"# label_prior, chosen across sets ({time.time() - started:.0f} s on this machine)\n")
    print(lb.format_selection(choice))
    unlabelled = np.mean([r["auroc"] for r in records if r["setting"] == "no labels"])
    print(f"\nThe same teacher without labels: mean AUROC {unlabelled:.4f} (same sets, seeds and test rows).")
    if args.json:
        Path(args.json).write_text(json.dumps({"records": records, "selection": choice}, indent=1))


if __name__ == "__main__":
    main()
