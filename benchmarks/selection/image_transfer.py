"""What the image student distils from (`make select-image-transfer`): a screen of its transfer set on digits
one-vs-rest, chosen leave one class out.

For each normal digit and seed (the protocol of benchmarks/images.py: scikit-learn's scans at 32×32, 70 % of the
digit trains, the rest and the other nine digits are held out), each teacher is fitted once and one student per
candidate is distilled from it; every candidate differs only in the copies of the normal training images it
distils besides them. Leave one class out: for each digit, the candidate with the best mean student − teacher
AUROC on the *other* nine digits (every seed) is picked, and its gap on the held-out digit is reported. The
candidates' own rows are in-sample.

Usage: .venv/bin/python benchmarks/selection/image_transfer.py [--seeds 0] [--teachers backbone] [--jobs 2]
       [--json PATH]   (resumes from its JSON)
"""

import sys
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from digit_screen import aurocs, digit_split, screen_main, teacher_of  # noqa: E402

# Each candidate: the default ImageConfig of its day with these settings changed (pinned: the default has since
# become "+ 4 rearranged copies", chosen here, 200 epochs (image_epochs.py), 2 turned copies (image_turned.py) and
# the student's map the mean of its distilled map and its features' density (image_student_map.py)).
OF_ITS_DAY = {"epochs": 100, "turned_per_image": 0, "student_map": "distilled", "student_widths": [16, 32]}
CANDIDATES = {
    "default (2 damaged + 2 bent copies)": OF_ITS_DAY | {"rearranged_per_image": 0},
    "+ 2 rearranged copies": OF_ITS_DAY | {"rearranged_per_image": 2},
    "+ 4 rearranged copies": OF_ITS_DAY | {"rearranged_per_image": 4},
    "2 rearranged copies instead of the bent ones": OF_ITS_DAY | {"rearranged_per_image": 2, "elastic_per_image": 0},
}


def run(candidates: dict, task: tuple) -> list[dict]:
    """One teacher fitted on one digit's split; one student per candidate (ImageConfig changes) distilled from it."""
    digit, seed, kind = task
    train, test, config = digit_split(digit, seed)
    teacher = teacher_of(kind, train, config)
    return [
        {"candidate": name, "digit": digit, "seed": seed, "teacher": kind}
        | aurocs(teacher, train, test, config.model_copy(update=changes))
        for name, changes in candidates.items()
    ]


def gap(record: dict) -> float:
    return record["student_auroc"] - record["teacher_auroc"]


def mean_gap(name: str, records: list[dict]) -> float:
    return np.mean([gap(r) for r in records if r["candidate"] == name])


def leave_one_class_out(candidates: dict, records: list[dict], kinds: list[str]) -> list[dict]:
    """One default serves every teacher: the candidate is picked on the other digits of all `kinds` together."""
    mine = [r for r in records if r["teacher"] in kinds]
    rows = []
    for held in sorted({r["digit"] for r in mine}):
        others = [r for r in mine if r["digit"] != held]
        here = [r for r in mine if r["digit"] == held]
        best = max(candidates, key=lambda name: mean_gap(name, others))
        rows.append(
            {
                "digit": held,
                "picked": best,
                "gap": mean_gap(best, here),
                "default_gap": mean_gap(next(iter(candidates)), here),
            }
        )
    return rows


def report(candidates: dict, records: list[dict]) -> str:
    """Per teacher: each candidate's gap per digit, then leave one class out (per teacher, then all together); the
    first candidate is the reference ("the default")."""
    lines = []
    for kind in dict.fromkeys(r["teacher"] for r in records):
        mine = [r for r in records if r["teacher"] == kind]
        digits = sorted({r["digit"] for r in mine})
        seeds = sorted({r["seed"] for r in mine})
        lines += [
            f"### {kind} teacher: student − teacher AUROC per normal digit (seeds {', '.join(map(str, seeds))})",
            "",
            "| candidate | " + " | ".join(str(d) for d in digits) + " | mean | worst | student AUROC, mean |",
            "|---|" + "---:|" * (len(digits) + 3),
        ]
        for name in candidates:
            runs = [r for r in mine if r["candidate"] == name]
            gaps = [np.mean([gap(r) for r in runs if r["digit"] == d]) for d in digits]
            student = np.mean([r["student_auroc"] for r in runs])
            cells = " | ".join(f"{g:+.3f}" for g in gaps)
            lines.append(f"| {name} | {cells} | {np.mean(gaps):+.4f} | {min(gaps):+.3f} | {student:.4f} |")
        teacher = np.mean([r["teacher_auroc"] for r in mine if r["candidate"] == next(iter(candidates))])
        lines += ["", f"Teacher AUROC, mean: {teacher:.4f}.", ""]
        lines += loco_table(candidates, records, [kind]) if len(digits) > 1 else []
    kinds = list(dict.fromkeys(r["teacher"] for r in records))
    if len(kinds) > 1:
        lines += loco_table(candidates, records, kinds)
    return "\n".join(lines)


def loco_table(candidates: dict, records: list[dict], kinds: list[str]) -> list[str]:
    rows = leave_one_class_out(candidates, records, kinds)
    return [
        f"Leave one class out, {' and '.join(kinds)} teacher (the candidate with the best mean gap on the "
        "other digits):",
        "",
        "| held-out digit | picked | its gap | the default's gap |",
        "|---:|---|---:|---:|",
        *(f"| {r['digit']} | {r['picked']} | {r['gap']:+.4f} | {r['default_gap']:+.4f} |" for r in rows),
        f"| mean | | **{np.mean([r['gap'] for r in rows]):+.4f}** "
        f"(worst {min(r['gap'] for r in rows):+.4f}) | {np.mean([r['default_gap'] for r in rows]):+.4f} "
        f"(worst {min(r['default_gap'] for r in rows):+.4f}) |",
        "",
    ]


if __name__ == "__main__":
    screen_main(
        __doc__, partial(run, CANDIDATES), partial(report, CANDIDATES), HERE / "image_transfer.json", [0], ["backbone"]
    )
