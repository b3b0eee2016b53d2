"""What the digit screens (image_transfer.py, image_standardise.py) share: the command line, resuming from the JSON
record and running (digit, seed, teacher) tasks two at a time. Each task's `run` returns its records, each with the
keys `teacher`, `digit` and `seed`."""

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from images import load_set  # benchmarks/images.py: the one-vs-rest protocol

from anomaly_distill.image.image_pipeline import distill_image_student, evaluate_images, fit_teacher, split_images


def screen_main(doc: str, run: Callable, report: Callable, default_json: Path, seeds: list[int], teachers: list[str]):
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--teachers", nargs="+", default=teachers, choices=["autoencoder", "backbone", "ensemble"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=default_json)
    args = parser.parse_args()
    records = json.loads(args.json.read_text()) if args.json.exists() else []
    done = {(r["teacher"], r["digit"], r["seed"]) for r in records}
    tasks = [(d, s, k) for k in args.teachers for s in args.seeds for d in args.digits if (k, d, s) not in done]
    with ProcessPoolExecutor(args.jobs) as pool:
        for future in as_completed([pool.submit(run, task) for task in tasks]):
            done_now = future.result()
            first = done_now[0]
            records += done_now
            args.json.write_text(json.dumps(records, indent=1))
            print(f"done: {first['teacher']} teacher, digit {first['digit']}, seed {first['seed']}", file=sys.stderr)
    print(report(records))


def digit_split(digit: int, seed: int) -> tuple:
    """(training images, held-out images, ImageConfig) of one normal digit, one thread (two tasks at a time)."""
    torch.set_num_threads(1)
    data, config = load_set("digits", digit, seed)
    return *split_images(data, config), config


def teacher_of(kind: str, train, config):
    return fit_teacher(kind, torch.from_numpy(train.images), config)


def aurocs(teacher, train, test, config) -> dict:
    """Distil a student from `teacher` with `config`; both AUROCs on the held-out images."""
    return scored(teacher, distill_image_student(teacher, train, config), test, config)


def scored(teacher, student, test, config) -> dict:
    """Teacher's and student's AUROC on the held-out images."""
    result = evaluate_images(teacher, student, test, config)
    return {"teacher_auroc": result["teacher"]["auroc"], "student_auroc": result["student"]["auroc"]}


def reused(records: list[dict], screened: Path, names: dict[str, str]) -> list[dict]:
    """Another screen's students for the tasks of `records`, its candidate names mapped by `names`: the same
    teachers (fitted deterministically per digit and seed) and settings, so they need not be trained again."""
    tasks = {(r["teacher"], r["digit"], r["seed"]) for r in records}
    return [
        r | {"candidate": names[r["candidate"]]}
        for r in json.loads(screened.read_text())
        if r["candidate"] in names and (r["teacher"], r["digit"], r["seed"]) in tasks
    ]
