"""Turned copies in the image student's transfer set (`make select-image-turned`): a screen on digits one-vs-rest,
chosen leave one class out, by the transfer screen's machinery (image_transfer.py: one teacher per digit, seed and
kind, one student per candidate; the candidate with the best mean student − teacher AUROC on the *other* nine
digits is picked for each held-out digit).

Why: after the rearranged copies and 200 epochs, the backbone's student still trails its teacher by more than 0.02
on digits 8 and 9, where the "defects" are other digits: whole shapes it never distilled. A turned or mirrored
normal image is one (a 6 upside down reads as a 9), made without any label or anomaly.

Usage: .venv/bin/python benchmarks/selection/image_turned.py [--seeds 0 1 2] [--teachers backbone autoencoder]
       [--jobs 2] [--json PATH]   (resumes from its JSON)
"""

import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from digit_screen import screen_main  # noqa: E402
from image_transfer import report, run  # noqa: E402

# The default ImageConfig of 2026-12-07 (2 damaged, 2 bent and 4 rearranged copies, 200 epochs, the distilled map),
# pinned, with 0 or 2 turned copies, so the screen re-runs to its record if the defaults change.
PINNED = {
    "synthetic_per_image": 2,
    "elastic_per_image": 2,
    "rearranged_per_image": 4,
    "epochs": 200,
    "student_map": "distilled",
    "student_widths": [16, 32],
}
CANDIDATES = {
    "no turned copies (the default before)": PINNED | {"turned_per_image": 0},
    "+ 2 turned copies": PINNED | {"turned_per_image": 2},
}

if __name__ == "__main__":
    screen_main(
        __doc__, partial(run, CANDIDATES), partial(report, CANDIDATES), HERE / "image_turned.json", [0], ["backbone"]
    )
