"""Float vs int8 vs pruned students on every ADBench set: size, rows/s, AUROC and fidelity (`make bench-compress`).

Per set and seed: one teacher (the default ensemble), one soft-label table, one float student; the int8 student
is that student quantised (calibrated on the same distillation set) and the pruned one that student with half of
each hidden layer's units removed and fine-tuned — exactly what `student.compress` does in training. Held-out
rows: stratified 30 %. Rows/s: one thread, held-out rows tiled to 20,000, best of 3, the three models measured in
turn three times (side by side) and the best kept. Size: the saved detector file the registry stores.
Shortened for one run on 2 cores (stated in BENCHMARKS.md): student epochs 40 (default 150), at most 20,000 real
rows in the distillation set (default 100,000). The compression settings are the defaults and were not tuned on
these sets.

Usage: .venv/bin/python benchmarks/compression.py [SETS ...] [--seeds 0 1] [--json PATH]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from adbench_cli import adbench_arguments  # benchmarks/adbench_cli.py

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import load_table
from anomaly_distill.detector import size_bytes
from anomaly_distill.metrics import (
    detection_metrics,
    fidelity,
    has_both_classes,
    rows_per_second,
    threshold_at_contamination,
)
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.compress import compress_student

METHODS = ("float", "int8", "prune")


def compare(path: Path, seed: int) -> list[dict]:
    table = load_table(path)
    config = EngineConfig.model_validate({"seed": seed, "distill": {"epochs": 40, "max_real_rows": 20_000}})
    train, test = pipeline.split(table, config)
    trained = pipeline.train_teacher(train, config)
    soft = pipeline.generate_soft_labels(trained, train, config)
    students = {"float": pipeline.distill_student(soft, trained, train, config)}
    for method in METHODS[1:]:
        with_method = config.model_copy(update={"student": config.student.model_copy(update={"compress": method})})
        students[method] = compress_student(students["float"], soft, trained.preprocessor, with_method)
    train_rows = train.features.to_numpy(dtype=np.float32)
    for student in students.values():  # the threshold, as pipeline.distill_student sets it
        student.threshold = threshold_at_contamination(student.model.score(train_rows), config.contamination)
    teacher_scores = trained.score(test.features)
    rows = np.resize(test.features.to_numpy(dtype=np.float32), (20_000, test.features.shape[1]))
    rates = {method: 0.0 for method in students}
    for _ in range(3):
        for method, student in students.items():
            rates[method] = max(rates[method], rows_per_second(student.model.score, rows))
    results = []
    for method, student in students.items():
        scores = student.score(test.features)
        auroc = detection_metrics(test.labels, scores, student.threshold)["auroc"]
        results.append(
            {
                "dataset": path.stem,
                "seed": seed,
                "method": method,
                "rows": len(table.features),
                "features": table.features.shape[1],
                "params": student.n_params,
                "size_bytes": size_bytes(student),
                "rows_per_second": rates[method],
                "auroc": auroc if has_both_classes(test.labels) else float("nan"),
                "fidelity": fidelity(teacher_scores, scores),
            }
        )
    return results


def markdown(results: list[dict]) -> str:
    by = {(r["dataset"], r["seed"], r["method"]): r for r in results}
    runs = list(dict.fromkeys((r["dataset"], r["seed"]) for r in results))
    lines = [
        "| set | seed | size B float / int8 / pruned | rows/s float / int8 / pruned | AUROC float | Δ int8 | Δ pruned "
        "| fidelity float / int8 / pruned |",
        "|---|---:|---|---|---:|---:|---:|---|",
    ]
    for dataset, seed in runs:
        f, q, p = (by[(dataset, seed, m)] for m in METHODS)
        rates = " / ".join(f"{r['rows_per_second'] / 1e6:.2f}M" for r in (f, q, p))
        lines.append(
            f"| {dataset} | {seed} | {f['size_bytes']:,} / {q['size_bytes']:,} / {p['size_bytes']:,} "
            f"| {rates} "
            f"| {f['auroc']:.4f} | {q['auroc'] - f['auroc']:+.4f} | {p['auroc'] - f['auroc']:+.4f} "
            f"| {f['fidelity']:.3f} / {q['fidelity']:.3f} / {p['fidelity']:.3f} |"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {line}" for line in summary(results, runs, by))


def summary(results: list[dict], runs: list, by: dict) -> list[str]:
    lines = []
    for method in METHODS[1:]:
        ratio = lambda key: [by[(d, s, method)][key] / by[(d, s, "float")][key] for d, s in runs]  # noqa: E731
        deltas = np.array([by[(d, s, method)]["auroc"] - by[(d, s, "float")]["auroc"] for d, s in runs])
        fid = [by[(d, s, method)]["fidelity"] for d, s in runs]
        lines.append(
            f"{method}: size × {np.median(ratio('size_bytes')):.2f} (median), rows/s × "
            f"{np.median(ratio('rows_per_second')):.2f} (median; range {min(ratio('rows_per_second')):.2f}–"
            f"{max(ratio('rows_per_second')):.2f}), AUROC change mean {np.mean(deltas):+.4f}, median "
            f"{np.median(deltas):+.4f}, worst {deltas.min():+.4f}; lost > 0.01 AUROC on {int((deltas < -0.01).sum())} "
            f"of {len(runs)} runs; fidelity to the teacher mean {np.mean(fid):.3f} (float "
            f"{np.mean([by[(d, s, 'float')]['fidelity'] for d, s in runs]):.3f})"
        )
    return lines


def main() -> None:
    args = adbench_arguments(__doc__, "compression.json")
    results, started = [], time.perf_counter()
    for name in args.sets:
        for seed in args.seeds:
            results += compare(args.data / f"{name}.npz", seed)
            done = results[-len(METHODS) :]
            print(
                f"{name} seed {seed} ({time.perf_counter() - started:.0f} s): "
                + ", ".join(f"{r['method']} {r['auroc']:.4f} {r['size_bytes']} B" for r in done),
                file=sys.stderr,
                flush=True,
            )
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
