"""Image teacher vs student (`make bench-images`): image AUROC, pixel AUROC, parameters, images/s, ONNX parity.

Sets (nothing downloaded): the generated textures (anomaly_distill/textures.py: 200 normal, 20 per defect kind,
generated at 128×128 and scored at 64×64; masks known) and scikit-learn's digits (8×8 scans scaled to 32×32;
digit 0 normal, the other nine anomalies). Teachers: the convolutional autoencoder, and the ResNet-18 backbone
from a weights file this script saves itself with seeded random weights — there are no pretrained weights on
this machine, so the backbone row shows the pipeline and its speed, not what ImageNet features would reach.
Default ImageConfig otherwise. images/s: one thread, 64 held-out images, best of 3, teacher and student in turn.

Usage: .venv/bin/python benchmarks/images.py [--json PATH]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anomaly_distill.config import ImageConfig
from anomaly_distill.export import OnnxScorer
from anomaly_distill.image_data import digits_set, load_image_set
from anomaly_distill.image_pipeline import distill_image_student, evaluate_images, split_images, train_image_teacher
from anomaly_distill.metrics import rows_per_second  # also images/s: one thread, best of 3
from anomaly_distill.models.images import ResNet18, params
from anomaly_distill.textures import write_textures

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, data, config: ImageConfig, tmp: Path) -> dict:
    started = time.perf_counter()
    train, test = split_images(data, config)
    teacher = train_image_teacher(train, config)
    student = distill_image_student(teacher, train, config)
    result = evaluate_images(teacher, student, test, config)
    sample = np.resize(test.images, (64, *test.images.shape[1:]))
    teacher_rate = rows_per_second(lambda x: teacher.target_maps(torch.from_numpy(x)), sample)
    student_rate = rows_per_second(student.score_images, sample)
    onnx = OnnxScorer(student.export_onnx(tmp / f"{name}-{teacher.kind}.onnx"))
    scores, maps = onnx.session.run(None, {"images": test.images})
    return {
        "set": name,
        "teacher": teacher.kind,
        "train_images": len(train),
        "test_images": len(test),
        "teacher_auroc": result["teacher"].get("auroc"),
        "student_auroc": result["student"].get("auroc"),
        "teacher_pixel_auroc": result["teacher"].get("pixel_auroc"),
        "student_pixel_auroc": result["student"].get("pixel_auroc"),
        "fidelity": result["student"]["fidelity"],
        "teacher_params": teacher.n_params,
        "student_params": params(student.net),
        "teacher_images_per_second": teacher_rate,
        "student_images_per_second": student_rate,
        "onnx_max_difference": float(
            max(
                np.abs(scores - student.score_images(test.images)).max(), np.abs(maps - student.maps(test.images)).max()
            )
        ),
        "seconds": time.perf_counter() - started,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| set | seed | teacher | AUROC teacher / student | pixel AUROC teacher / student | params teacher / student "
        "| images/s teacher / student (× faster) | ONNX max diff |",
        "|---|---:|---|---|---|---|---|---:|",
    ]
    for r in results:
        pixel = f"{r['teacher_pixel_auroc']:.4f} / {r['student_pixel_auroc']:.4f}" if r["teacher_pixel_auroc"] else "—"
        ratio = r["student_images_per_second"] / r["teacher_images_per_second"]
        lines.append(
            f"| {r['set']} | {r.get('seed', 0)} | {r['teacher']} "
            f"| {r['teacher_auroc']:.4f} / {r['student_auroc']:.4f} | {pixel} "
            f"| {r['teacher_params']:,} / {r['student_params']:,} "
            f"| {r['teacher_images_per_second']:,.0f} / {r['student_images_per_second']:,.0f} (×{ratio:.1f}) "
            f"| {r['onnx_max_difference']:.1e} |"
        )
    return "\n".join(lines)


def seed_summary(results: list[dict]) -> str:
    """Per set and teacher over the seeds: mean and range of the student − teacher AUROC gap and of the speed-up."""
    lines = [
        "| set | teacher | seeds | student − teacher AUROC: mean (min … max) | × faster: mean (min … max) |",
        "|---|---|---:|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["set"], r["teacher"]), []).append(r)
    for (name, teacher), runs in groups.items():
        gaps = [r["student_auroc"] - r["teacher_auroc"] for r in runs]
        ratios = [r["student_images_per_second"] / r["teacher_images_per_second"] for r in runs]
        lines.append(
            f"| {name} | {teacher} | {len(runs)} | {np.mean(gaps):+.4f} ({min(gaps):+.4f} … {max(gaps):+.4f}) "
            f"| {np.mean(ratios):.1f} ({min(ratios):.1f} … {max(ratios):.1f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/images.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="ImageConfig seeds (split, init, copies)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        torch.save(ResNet18().state_dict(), tmp / "resnet18.pth")
        textures = load_image_set(write_textures(tmp / "textures"), 64, 3, 16)
        digits = digits_set(normal_digit=0, size=32)
        for seed in args.seeds:
            for name, data, size in (("textures", textures, 64), ("digits", digits, 32)):
                for teacher, weights in (("autoencoder", None), ("backbone", str(tmp / "resnet18.pth"))):
                    if teacher == "backbone" and data.images.shape[1] == 1:
                        data = type(data)(np.repeat(data.images, 3, axis=1), data.labels, data.paths, data.masks)
                    config = ImageConfig(
                        size=size, channels=data.images.shape[1], teacher=teacher, weights=weights, seed=seed
                    )
                    results.append({**run(name, data, config, tmp), "seed": seed})
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    if len(args.seeds) > 1:
        print("\n" + seed_summary(results))


if __name__ == "__main__":
    main()
