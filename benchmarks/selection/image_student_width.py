"""The image student's width (`make select-image-student-width`): a narrower student scores faster; does it still
follow its teacher? A screen on digits one-vs-rest, chosen leave one class out by the transfer screen's report
(image_transfer.py: one teacher per digit, seed and kind, one student per candidate), and with --speed, each
candidate's images/s beside the autoencoder and backbone teachers (idle, one thread, 256 held-out images, best of
3, twice; the networks with 1 epoch: speed does not depend on training), on digit 0 and `fabric`.

Why: with the mean map the student of its day ([16, 32]) scored ×19.9 the autoencoder's rate and ×94.9 the
backbone's on digits (idle, AMD EPYC): on the ×20 line, below ×100. Its convolutions take ~90 % of its time, so
only fewer of them, or narrower ones, make it faster.

Adopted as the default (2026-12-07, the session after the backbone screen): the rule picks [16, 16] on every
held-out digit with all three teachers (backbone seeds 0-2, autoencoder and ensemble seeds 0-2), and both texture
families at 128 px were run with it. BENCHMARKS.md, "The student's width", says more.

Usage: .venv/bin/python benchmarks/selection/image_student_width.py [--seeds 0 1 2] [--teachers backbone]
       [--jobs 2] [--json PATH]   (resumes from its JSON)
       .venv/bin/python benchmarks/selection/image_student_width.py --speed
"""

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from digit_screen import screen_main  # noqa: E402
from image_student_map import PINNED as MAP_SCREEN_PINNED  # noqa: E402
from image_student_map_speed import SPEED_TEACHERS, cpu_model  # noqa: E402
from image_transfer import mean_gap, report, run  # noqa: E402
from images import rates_in_turn, speed_inputs, teachers  # noqa: E402

from anomaly_distill.image.image_pipeline import distill_image_student  # noqa: E402

# The default ImageConfig of 2026-12-07 (2 damaged, 2 bent, 4 rearranged and 2 turned copies, 200 epochs), pinned as
# the student-map screen's, with the mean map it chose, so the screen re-runs to its record if the defaults change.
# Each candidate sets its width.
PINNED = MAP_SCREEN_PINNED | {"student_map": "mean"}
CANDIDATES = {
    "[16, 16] (the default)": PINNED | {"student_widths": [16, 16]},
    "[16, 32] (the default before)": PINNED | {"student_widths": [16, 32]},
    "[8, 16]": PINNED | {"student_widths": [8, 16]},
}
FASTEST_FIRST = ["[8, 16]", "[16, 16] (the default)", "[16, 32] (the default before)"]
TOLERANCE = 0.005  # fixed before the screen ran: how much mean gap a faster student may give up


# Only the backbone's seed 0 distils all three (it chose [16, 16] over [8, 16]); every other teacher and seed distils
# [16, 16] alone, and its [16, 32] student is the one of `make bench-images` before the change
# (benchmarks/images_before_student_width/images.json: the same teacher, digit, seed and settings), not trained again.
ALL_CANDIDATES_ON = ("backbone", 0)
NARROW_ONLY = ["[16, 16] (the default)"]


def run_candidates(task: tuple) -> list[dict]:
    digit, seed, kind = task
    names = CANDIDATES if (kind, seed) == ALL_CANDIDATES_ON else NARROW_ONLY
    return run({name: CANDIDATES[name] for name in names}, task)


def with_bench_students(records: list[dict]) -> list[dict]:
    """`records` and, for the tasks without a [16, 32] student, the bench's one with the same settings."""
    widest = {(r["teacher"], r["digit"], r["seed"]) for r in records if r["candidate"] == FASTEST_FIRST[-1]}
    tasks = {(r["teacher"], r["digit"], r["seed"]) for r in records} - widest
    bench = json.loads((HERE.parent / "images_before_student_width/images.json").read_text())
    return records + [
        {
            "candidate": FASTEST_FIRST[-1],
            "digit": r["normal"],
            "seed": r["seed"],
            "teacher": kind,
            "teacher_auroc": r[kind]["teacher_auroc"],
            "student_auroc": r[kind]["student_auroc"],
        }
        for r in bench
        for kind in ("autoencoder", "backbone", "ensemble")
        if r["set"] == "digits" and (kind, r["normal"], r["seed"]) in tasks
    ]


def common_gap(name: str, records: list[dict]) -> tuple[float, float]:
    """Mean gap of `name` and of the widest candidate on the tasks `name` was distilled for."""
    tasks = {(r["teacher"], r["digit"], r["seed"]) for r in records if r["candidate"] == name}
    mine = [r for r in records if (r["teacher"], r["digit"], r["seed"]) in tasks]
    return mean_gap(name, mine), mean_gap(FASTEST_FIRST[-1], mine)


def fastest_within(records: list[dict]) -> str:
    """The fastest candidate whose mean student − teacher gap is within TOLERANCE of the widest one's (on the
    tasks both were distilled for)."""
    gaps = {name: common_gap(name, records) for name in FASTEST_FIRST}
    return next(name for name, (gap, widest) in gaps.items() if gap >= widest - TOLERANCE)


def by_teacher(records: list[dict]) -> dict[str, list[dict]]:
    return {kind: [r for r in records if r["teacher"] == kind] for kind in dict.fromkeys(r["teacher"] for r in records)}


def screened_on(kind: str, records: list[dict]) -> dict:
    """The candidates distilled from `kind` teachers, the default first."""
    names = {r["candidate"] for r in records if r["teacher"] == kind}
    return {name: changes for name, changes in CANDIDATES.items() if name in names}


def seeds_of(kind: str, records: list[dict]) -> str:
    names = screened_on(kind, records)
    seeds = {name: sorted({r["seed"] for r in records if r["candidate"] == name}) for name in names}
    return f"{kind} teacher: " + ", ".join(f"{name} {'/'.join(map(str, s))}" for name, s in seeds.items())


def report_with_rule(records: list[dict]) -> str:
    """The transfer screen's report (later seeds' [16, 32] students from the bench), then leave one class out by the
    speed rule: for each held-out digit, the fastest candidate within TOLERANCE of the widest on the *other* digits."""
    records = with_bench_students(records)
    lines = [
        *(report(screened_on(kind, records), mine) for kind, mine in by_teacher(records).items()),
        "Seeds per candidate: " + "; ".join(seeds_of(kind, mine) for kind, mine in by_teacher(records).items()) + ".",
        "",
        f"Leave one class out, the fastest candidate within {TOLERANCE} of the widest's mean gap on the other digits:",
        "",
        "| held-out digit | picked | its gap | the widest's gap |",
        "|---:|---|---:|---:|",
    ]
    picks = []
    for held in sorted({r["digit"] for r in records}):
        picked = fastest_within([r for r in records if r["digit"] != held])
        here = [r for r in records if r["digit"] == held]
        picks.append((mean_gap(picked, here), mean_gap(FASTEST_FIRST[-1], here)))
        lines.append(f"| {held} | {picked} | {picks[-1][0]:+.4f} | {picks[-1][1]:+.4f} |")
    lines.append(
        f"| mean | | **{sum(p for p, _ in picks) / len(picks):+.4f}** (worst {min(p for p, _ in picks):+.4f}) "
        f"| {sum(w for _, w in picks) / len(picks):+.4f} (worst {min(w for _, w in picks):+.4f}) |"
    )
    lines.append(f"\nOn every digit: {fastest_within(records)}.")
    return "\n".join(lines)


def speeds(name: str) -> dict[str, float]:
    """Best images/s of each candidate's student and of both teachers, measured in turn, twice."""
    train, sample, config = speed_inputs(name)
    fitted = teachers(train, config, SPEED_TEACHERS)
    students = {
        name: distill_image_student(fitted["autoencoder"], train, config.model_copy(update=changes | {"epochs": 1}))
        for name, changes in CANDIDATES.items()
    }
    return {key: max(values) for key, values in rates_in_turn(students, fitted, sample).items()}


def speed_report() -> None:
    torch.set_num_threads(1)
    print(f"{cpu_model()}, one thread\n", flush=True)
    print("| set | student | images/s | × the autoencoder | × the backbone |\n|---|---|---:|---:|---:|")
    for name in ("digits", "fabric"):
        best = speeds(name)
        for candidate in CANDIDATES:
            rate = best[candidate]
            print(
                f"| {name} | {candidate} | {rate:,.0f} | ×{rate / best['autoencoder']:.1f} "
                f"| ×{rate / best['backbone']:.1f} |",
                flush=True,
            )
        print(f"| {name} | teachers | {best['autoencoder']:,.0f} / {best['backbone']:,.0f} | | |", flush=True)


if __name__ == "__main__":
    if "--speed" in sys.argv:
        speed_report()
    else:
        screen_main(
            __doc__,
            run_candidates,
            report_with_rule,
            HERE / "image_student_width.json",
            [0, 1, 2],
            ["backbone"],
        )
