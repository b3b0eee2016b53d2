"""The image student's map (`make select-image-student-map`): the map distilled from the teacher's, the density of
the student's own hidden features, or the larger of both; a screen on digits one-vs-rest, chosen leave one class
out by the transfer screen's report (image_transfer.py: the candidate with the best mean student − teacher AUROC on
the *other* nine digits is picked for each held-out digit).

Why: with every copy the transfer set has gained, the backbone's student still trails its teacher by more than
0.02 on digits 8 and 9, and on `fabric` (defect kinds it never distilled) by 0.17. A distilled map is only as
good as the copies it was distilled on; the density of the student's features (fitted on the normal training
images after distillation, no anomaly needed) flags any location unlike the normal ones, of whatever kind.

One student per digit, seed and teacher serves every candidate: they differ only in how its map is read.

Usage: .venv/bin/python benchmarks/selection/image_student_map.py [--seeds 0 1 2] [--teachers backbone autoencoder]
       [--jobs 2] [--json PATH]   (resumes from its JSON)
"""

import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from digit_screen import digit_split, scored, screen_main, teacher_of  # noqa: E402
from image_transfer import report  # noqa: E402
from image_turned import PINNED as TURNED_SCREEN_PINNED  # noqa: E402

from anomaly_distill.image.image_pipeline import distill_image_student  # noqa: E402

# The default ImageConfig of 2026-12-07 (2 damaged, 2 bent, 4 rearranged and 2 turned copies, 200 epochs), pinned;
# the student distils its map, which the candidates then read.
PINNED = TURNED_SCREEN_PINNED | {"turned_per_image": 2}
CANDIDATES = {
    "distilled (the default before)": "distilled",
    "density of its features": "density",
    "the larger of both": "max",
    "the mean of both": "mean",
}


def run(task: tuple) -> list[dict]:
    digit, seed, kind = task
    train, test, config = digit_split(digit, seed)
    config = config.model_copy(update=PINNED)
    teacher = teacher_of(kind, train, config)
    student = distill_image_student(teacher, train, config)
    records = []
    for name, student_map in CANDIDATES.items():
        student.net.student_map = student_map
        records.append(
            {"candidate": name, "digit": digit, "seed": seed, "teacher": kind} | scored(teacher, student, test, config)
        )
    return records


if __name__ == "__main__":
    screen_main(__doc__, run, partial(report, CANDIDATES), HERE / "image_student_map.json", [0, 1, 2], ["backbone"])
