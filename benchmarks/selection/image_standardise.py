"""Should each image be brought to the training images' typical brightness and contrast (`standardise_images`)?
A screen on digits one-vs-rest, chosen leave one class out (`make select-image-standardise`).

For each normal digit and seed (benchmarks/images.py's protocol), each teacher and its student are trained with
the setting off and on (the teacher changes too: both see the standardised image). Leave one class out: for each
digit, the value with the better mean student AUROC on the *other* nine digits (both teachers, every seed) is
picked, and its student AUROC on the held-out digit reported. The texture families are not in this choice:
`make bench-images` and `benchmarks/images.py --settings` report them.

Usage: .venv/bin/python benchmarks/selection/image_standardise.py [--seeds 0 1] [--teachers backbone autoencoder]
       [--jobs 2] [--json PATH]   (resumes from its JSON)
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from digit_screen import aurocs, digit_split, screen_main, teacher_of  # noqa: E402

VALUES = {"off": False, "on": True}


def run(task: tuple) -> list[dict]:
    digit, seed, kind = task
    train, test, config = digit_split(digit, seed)
    records = []
    for name, value in VALUES.items():
        # the teacher sees the setting too; the student is the default's when this ran, so it re-runs to its record
        chosen = config.model_copy(update={"standardise_images": value, "student_widths": [16, 32]})
        teacher = teacher_of(kind, train, chosen)
        records.append(
            {"value": name, "digit": digit, "seed": seed, "teacher": kind, **aurocs(teacher, train, test, chosen)}
        )
    return records


def mean(records: list[dict], key: str, **where) -> float:
    return float(np.mean([r[key] for r in records if all(r[k] == v for k, v in where.items())]))


def report(records: list[dict]) -> str:
    digits = sorted({r["digit"] for r in records})
    kinds = list(dict.fromkeys(r["teacher"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    lines = [
        f"Teacher / student AUROC per normal digit (seeds {', '.join(map(str, seeds))}), `standardise_images` off "
        "and on:",
        "",
        "| digit | " + " | ".join(f"{k} off | {k} on" for k in kinds) + " |",
        "|---:|" + "---|---|" * len(kinds),
    ]
    for d in [*digits, "mean"]:
        where = {} if d == "mean" else {"digit": d}
        cells = [
            f"{mean(records, 'teacher_auroc', teacher=k, value=v, **where):.4f} / "
            f"{mean(records, 'student_auroc', teacher=k, value=v, **where):.4f}"
            for k in kinds
            for v in VALUES
        ]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Leave one class out (the value with the better mean student AUROC on the other digits, both teachers):",
        "",
        "| held-out digit | picked | its student AUROC | off | on |",
        "|---:|---|---:|---:|---:|",
    ]
    picked, fixed = [], {v: [] for v in VALUES}
    for held in digits:
        others = [r for r in records if r["digit"] != held]
        best = max(VALUES, key=lambda v: mean(others, "student_auroc", value=v))
        here = {v: mean(records, "student_auroc", digit=held, value=v) for v in VALUES}
        picked.append(here[best])
        for v in VALUES:
            fixed[v].append(here[v])
        lines.append(f"| {held} | {best} | {here[best]:.4f} | {here['off']:.4f} | {here['on']:.4f} |")
    lines.append(f"| mean | | **{np.mean(picked):.4f}** | {np.mean(fixed['off']):.4f} | {np.mean(fixed['on']):.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    screen_main(__doc__, run, report, HERE / "image_standardise.json", [0, 1], ["backbone", "autoencoder"])
