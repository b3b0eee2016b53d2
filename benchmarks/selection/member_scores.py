"""Cache every candidate teacher member's calibrated scores on one split per set, for choosing the ensemble rule.

Runs the teacher's own member code (`fit_detector`, training-score ECDFs) on the selection seed's split, which
no reported figure uses. Writes <out>/<set>.npz: test_scores / train_scores (rows x members), test labels.
Usage: python benchmarks/selection/member_scores.py OUT_DIR SEED SET.npz ...
"""

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

MEMBERS = ("iforest", "ecod", "copod", "hbos", "knn", "lof")
TRAIN_SAMPLE = 5_000  # training rows kept for label-free weighting rules


def one(path: str, out: str, seed: int) -> str:
    import torch

    torch.set_num_threads(1)
    from anomaly_distill.config import EngineConfig
    from anomaly_distill.data import fit_preprocessor, load_table
    from anomaly_distill.models.base import subsample
    from anomaly_distill.models.teachers import EcdfCalibrator, make_detector
    from anomaly_distill.tabular import pipeline
    from benchmarking.benchmark import make_baseline

    config = EngineConfig(seed=seed)
    train, test = pipeline.split(load_table(path), config)
    pre = fit_preprocessor(train.features)
    X, X_test = pre.transform(train.features), pre.transform(test.features)
    X_fit = subsample(X, None, config.teacher.max_fit_rows, seed)[0]
    X_sample = subsample(X, None, TRAIN_SAMPLE, seed + 1)[0]
    test_cols, train_cols = [], []
    for name in MEMBERS:
        detector = make_baseline(name, seed) if name == "lof" else make_detector(name, seed)
        detector.fit(X_fit)
        calibrate = EcdfCalibrator(detector.decision_scores_)
        test_cols.append(calibrate(detector.decision_function(X_test)))
        train_cols.append(calibrate(detector.decision_function(X_sample)))
    target = Path(out) / f"{Path(path).stem}.npz"
    np.savez(target, test=np.column_stack(test_cols), train=np.column_stack(train_cols), y=test.labels)
    return target.name


if __name__ == "__main__":
    out, seed, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    Path(out).mkdir(parents=True, exist_ok=True)
    paths = sorted(paths, key=lambda p: -Path(p).stat().st_size)
    with ProcessPoolExecutor(2) as pool:
        for name in pool.map(one, paths, [out] * len(paths), [seed] * len(paths)):
            print(name, flush=True)
