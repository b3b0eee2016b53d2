"""The cost of the image student's mean map (`make select-image-student-map`, its last step): images/s of the
student reading its distilled map or the mean of it and its feature density, beside the autoencoder and backbone
teachers (one thread, 256 held-out images, best of 3, in turn in one process, twice); the networks of the accuracy
runs with 1 epoch (speed does not depend on training), on digit 0 and `fabric`.

Usage: .venv/bin/python benchmarks/selection/image_student_map_speed.py
"""

import sys
from copy import deepcopy
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from images import rates_in_turn, speed_inputs, teachers  # noqa: E402

from anomaly_distill.image.image_pipeline import distill_image_student  # noqa: E402

SPEED_TEACHERS = ("autoencoder", "backbone")
WIDTH_OF_ITS_DAY = {"student_widths": [16, 32]}  # the default student when this ran, so it re-runs to its record


def cpu_model() -> str:
    """The CPU's name: the ratios move with the machine (the backbone most), so each output says which it was."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")


def rates_of(name: str) -> dict[str, list[float]]:
    train, sample, config = speed_inputs(name)
    fitted = teachers(train, config, SPEED_TEACHERS)
    student = distill_image_student(fitted["autoencoder"], train, config.model_copy(update=WIDTH_OF_ITS_DAY))
    return rates_in_turn({mode: reading(student, mode) for mode in ("distilled", "mean")}, fitted, sample)


def reading(student, mode: str):
    """A copy of `student` that reads its `mode` map."""
    copy = deepcopy(student)
    copy.net.student_map = mode
    return copy


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
