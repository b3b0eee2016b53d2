"""The cost of the image student's mean map (`make select-image-student-map`, its last step): images/s of the
student reading its distilled map or the mean of it and its feature density, beside the autoencoder and backbone
teachers (one thread, 256 held-out images, best of 3, in turn in one process, twice); the networks of the accuracy
runs with 1 epoch (speed does not depend on training), on digit 0 and `fabric`.

Usage: .venv/bin/python benchmarks/selection/image_student_map_speed.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from images import speed_inputs, teacher_images_per_second  # noqa: E402

from anomaly_distill.image.image_pipeline import distill_image_student, fit_teacher  # noqa: E402
from anomaly_distill.metrics import rows_per_second  # noqa: E402


def cpu_model() -> str:
    """The CPU's name: the ratios move with the machine (the backbone most), so each output says which it was."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")


def rates_of(name: str) -> dict[str, list[float]]:
    train, sample, config = speed_inputs(name)
    teachers = {kind: fit_teacher(kind, torch.from_numpy(train.images), config) for kind in ("autoencoder", "backbone")}
    student = distill_image_student(teachers["autoencoder"], train, config)
    rates = {}
    for _ in range(2):
        for mode in ("distilled", "mean"):
            student.net.student_map = mode
            rates.setdefault(mode, []).append(rows_per_second(student.score_images, sample))
        for kind, teacher in teachers.items():
            rates.setdefault(kind, []).append(teacher_images_per_second(teacher, sample))
    return rates


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"{cpu_model()}, one thread", flush=True)
    for name in ("digits", "fabric"):
        rates = rates_of(name)
        best = {k: max(v) for k, v in rates.items()}
        print(name, {k: [round(x) for x in v] for k, v in rates.items()}, flush=True)
        for mode in ("distilled", "mean"):
            print(
                f"  student {mode}: {best[mode]:,.0f}/s, x{best[mode] / best['autoencoder']:.1f} autoencoder, "
                f"x{best[mode] / best['backbone']:.1f} backbone",
                flush=True,
            )
