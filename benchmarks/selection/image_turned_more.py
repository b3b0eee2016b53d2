"""More turned copies for the image student? 4 against the default 2: a screen on digits one-vs-rest, chosen leave
one class out, by the transfer screen's machinery (image_transfer.py). The last step of `make select-image-turned`:
it reuses the students of the step before.

Why: 2 turned copies halved the backbone student's mean gap (image_turned.py), and digits 8 and 9 still trail their
teacher by 0.026; the screen stopped at the one count it tried.

Usage: .venv/bin/python benchmarks/selection/image_turned_more.py [--seeds 0 1 2] [--teachers backbone]
       [--jobs 2] [--json PATH]   (resumes from its JSON)
"""

import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from digit_screen import reused, screen_main  # noqa: E402
from image_transfer import report, run  # noqa: E402
from image_turned import CANDIDATES as SCREENED  # noqa: E402
from image_turned import PINNED  # noqa: E402

# Trained here, pinned as image_turned.py's; its two candidates' students are reused, not trained again.
TRAINED = {"+ 4 turned copies": PINNED | {"turned_per_image": 4}}
CANDIDATES = {**SCREENED, **TRAINED}


def report_all(records: list[dict]) -> str:
    names = {name: name for name in SCREENED}
    return report(CANDIDATES, reused(records, HERE / "image_turned.json", names) + records)


if __name__ == "__main__":
    screen_main(__doc__, partial(run, TRAINED), report_all, HERE / "image_turned_more.json", [0], ["backbone"])
