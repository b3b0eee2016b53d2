"""Distillation schedule and class weight: held-out AUROC of the student per variant (`make bench-schedule`).

Labels are used the way the training flow uses them: the soft-label table carries the true label of every real
training row, the hard-label term trains on it (synthetic rows: the teacher's label). One teacher per set and
seed (the default unsupervised ensemble), then one student per variant on the same soft labels:
- soft only: α = 1, the default (the hard term has no weight);
- weighted: α = 0.5;
- weighted + balanced: α = 0.5, anomaly rows weighted normal ÷ anomaly rows in the hard term;
- alternating: soft-only and hard-only epochs (early stopping on the α = 0.5 sum);
- alternating + balanced.
Student epochs 40 (instead of 150) and at most 20,000 real rows in the distillation set (instead of 100,000) to keep
the run short; stratified 70/30 split. Without set names: all sets in --data.

Usage: .venv/bin/python benchmarks/schedule_ablation.py [SETS ...] [--seeds 0 1] [--json PATH]
"""

import json
import sys
from pathlib import Path

import numpy as np
from adbench_cli import adbench_arguments  # benchmarks/adbench_cli.py

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import load_table
from anomaly_distill.metrics import detection_metrics
from anomaly_distill.tabular import pipeline

VARIANTS = {
    "soft only (default)": {"alpha": 1.0},
    "weighted": {"alpha": 0.5},
    "weighted + balanced": {"alpha": 0.5, "class_weight": "balanced"},
    "alternating": {"alpha": 0.5, "schedule": "alternating"},
    "alternating + balanced": {"alpha": 0.5, "schedule": "alternating", "class_weight": "balanced"},
}


def ablate(path: Path, seed: int) -> list[dict]:
    table = load_table(path)
    base = EngineConfig.model_validate({"seed": seed, "distill": {"epochs": 40, "max_real_rows": 20_000}})
    train, test = pipeline.split(table, base)
    trained = pipeline.train_teacher(train, base)
    soft = pipeline.generate_soft_labels(trained, train, base)
    results = []
    for name, distill in VARIANTS.items():
        config = base.model_copy(update={"distill": base.distill.model_copy(update=distill)})
        student = pipeline.distill_student(soft, trained, train, config)
        auroc = detection_metrics(test.labels, student.score(test.features), student.threshold)["auroc"]
        results.append({"dataset": path.stem, "seed": seed, "variant": name, "auroc": auroc})
    return results


def markdown(results: list[dict]) -> str:
    sets = list(dict.fromkeys((r["dataset"], r["seed"]) for r in results))
    lines = ["| set | seed | " + " | ".join(VARIANTS) + " |", "|---|---:|" + "---:|" * len(VARIANTS)]
    by = {(r["dataset"], r["seed"], r["variant"]): r["auroc"] for r in results}
    for dataset, seed in sets:
        cells = [f"{by[(dataset, seed, v)]:.4f}" for v in VARIANTS if (dataset, seed, v) in by]
        lines.append(f"| {dataset} | {seed} | " + " | ".join(cells) + " |")
    means = [np.mean([r["auroc"] for r in results if r["variant"] == v]) for v in VARIANTS]
    lines.append("| **mean** | | " + " | ".join(f"**{m:.4f}**" for m in means) + " |")
    default = {(r["dataset"], r["seed"]): r["auroc"] for r in results if r["variant"] == next(iter(VARIANTS))}
    wins = []
    for v in list(VARIANTS)[1:]:
        deltas = [r["auroc"] - default[(r["dataset"], r["seed"])] for r in results if r["variant"] == v]
        wins.append(
            f"{v}: better than soft only on {sum(d > 0.001 for d in deltas)}, worse on "
            f"{sum(d < -0.001 for d in deltas)} of {len(deltas)} (mean change {np.mean(deltas):+.4f})"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {w}" for w in wins)


def main() -> None:
    args = adbench_arguments(__doc__, "schedule_ablation.json")
    results = []
    for name in args.sets:
        for seed in args.seeds:
            results += ablate(args.data / f"{name}.npz", seed)
            print(
                f"{name} seed {seed}: " + ", ".join(f"{r['auroc']:.4f}" for r in results[-len(VARIANTS) :]),
                file=sys.stderr,
                flush=True,
            )
            args.json.write_text(json.dumps(results, indent=1) + "\n")  # kept as it goes: a long run
    print(markdown(results))


if __name__ == "__main__":
    main()
