"""How long the image student distils (`make select-image-epochs`): a screen of its epochs on digits one-vs-rest,
chosen leave one class out, by the transfer screen's machinery (image_transfer.py: one teacher per digit, seed and
kind, one student per candidate; the candidate with the best mean student − teacher AUROC on the *other* nine
digits is picked for each held-out digit).

Why: the backbone's student trails its teacher most (digit 9), and a diagnostic on the CLI folders (BENCHMARKS,
"Do more epochs close the backbone student's gap too?") saw the gap shrink from 100 to 400 epochs before the
rearranged copies were added. Epochs cost training time, not scoring speed.

Usage: .venv/bin/python benchmarks/selection/image_epochs.py [--seeds 0 1 2] [--teachers backbone autoencoder]
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

# The default ImageConfig (since the transfer screen: 2 damaged, 2 bent and 4 rearranged copies) with its student
# epochs pinned, no turned copies (the default since image_turned.py), the distilled map (image_student_map.py) and the
# [16, 32] student (image_student_width.py), so the screen re-runs to its record.
OF_ITS_DAY = {"turned_per_image": 0, "student_map": "distilled", "student_widths": [16, 32]}
CANDIDATES = {
    "100 epochs (the default before)": OF_ITS_DAY | {"epochs": 100},
    "200 epochs": OF_ITS_DAY | {"epochs": 200},
}

if __name__ == "__main__":
    screen_main(
        __doc__, partial(run, CANDIDATES), partial(report, CANDIDATES), HERE / "image_epochs.json", [0], ["backbone"]
    )
