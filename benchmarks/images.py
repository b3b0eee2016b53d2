"""Image teachers vs their students (`make bench-images`): the one-class protocol on digits, textures with defect
kinds the student never saw beside model-free baselines, and how `teacher: auto` chooses without labels.

- **Digits, one-vs-rest**: scikit-learn's 1,797 8×8 scans scaled to 32×32, grey. Each digit is the normal class
  once (its images split 70/30 into training and held-out), the other nine digits are the anomalies.
- **Textures** (anomaly_distill/image/textures.py, generated at 128×128, scored at 64×64 unless `--settings` gives a
  `size`, pixel masks known): `woven` (scratch, hole, stain) and `fabric` (blur, thinning, misweave: colour-neutral,
  no local brightness change, none of the kinds the student's synthetic damage makes). Beside the detectors,
  three model-free baselines fitted on the same normal training images: the largest deviation of colour ratios
  from the normal ones, and the largest 4×4 local brightness and local contrast deviations (in units of their
  spread over normal images).
- **Teachers**: the autoencoder, the ResNet-18 backbone (seeded random weights: no pretrained weights are on
  this machine) and their ensemble, each with its own student; default ImageConfig otherwise. Which rule `auto`
  follows is chosen leave-one-class-out on digits among the fixed teachers and "the best label-free signal"
  (`choice_signals`: AUROC of held-out normal training images against synthetically damaged, elastically bent, or
  both kinds of copies of them).
- **images/s**: one thread, 256 held-out images (batch scoring reads 256 at a time), best of 3, teacher and
  student measured in turn in one process: in each accuracy run (two runs at a time: busy) and, with --speed,
  once per set on its own (idle; the figures the targets are judged on).

Usage: .venv/bin/python benchmarks/images.py [--seeds 0 1 2] [--jobs 2] [--speed] [--json PATH]  (resumes from --json)
       [--settings JSON]  (ImageConfig changes for every run: write them to their own --json)
"""

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from anomaly_distill.config import ImageConfig
from anomaly_distill.image.image_data import ImageSet, digits_set, load_image_set
from anomaly_distill.image.image_pipeline import (
    TEACHER_KINDS,
    EnsembleTeacher,
    choice_signals,
    chosen_kind,
    distill_image_student,
    evaluate_images,
    fit_teacher,
    split_images,
    with_threshold,
)
from anomaly_distill.image.textures import FAMILIES, write_textures
from anomaly_distill.metrics import rows_per_second  # also images/s: one thread, best of 3
from anomaly_distill.models.images import ImageStudentNet, params

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ("synthetic", "elastic", "mean")
RULES = (*TEACHER_KINDS, *(f"argmax {signal}" for signal in SIGNALS))


def teachers(train: ImageSet, config: ImageConfig, kinds: tuple[str, ...] = TEACHER_KINDS) -> dict:
    """The teachers of `kinds`; the ensemble is built from the other two (fitted once either way)."""
    images = torch.from_numpy(train.images)
    members = [kind for kind in ("autoencoder", "backbone") if kind in kinds or "ensemble" in kinds]
    fitted = {kind: fit_teacher(kind, images, config) for kind in members}
    if "ensemble" in kinds:
        fitted["ensemble"] = with_threshold(EnsembleTeacher(list(fitted.values())), images, config)
    return {kind: fitted[kind] for kind in kinds}


def signals_with_mean(train: ImageSet, config: ImageConfig) -> dict:
    signals = choice_signals(torch.from_numpy(train.images), config)
    return {kind: {**values, "mean": float(np.mean(list(values.values())))} for kind, values in signals.items()}


def model_free(train: ImageSet, test: ImageSet) -> dict:
    """Image (and pixel) AUROC of the three model-free statistics, fitted on the normal training images."""
    result = {}
    for name, statistic in (("colour", colour_map), ("brightness", brightness_map), ("contrast", contrast_map)):
        reference = statistic(train.images)
        mu, sd = float(reference.mean()), float(reference.std()) + 1e-9
        deviation = np.abs(statistic(test.images) - mu) / sd
        result[f"{name}_auroc"] = float(roc_auc_score(test.labels, deviation.reshape(len(deviation), -1).max(1)))
        if test.masks is not None and test.masks.any():
            full = F.interpolate(torch.from_numpy(deviation)[:, None], size=test.masks.shape[-2:], mode="nearest")
            result[f"{name}_pixel_auroc"] = float(roc_auc_score(test.masks.ravel(), full.numpy().ravel()))
    return result


def colour_map(images: np.ndarray) -> np.ndarray:
    """Per pixel: the summed channel shares (channel / mean of channels); a grey image has none to compare."""
    shares = images / (images.mean(axis=1, keepdims=True) + 1e-6)
    return (
        np.abs(shares - np.median(shares, axis=(2, 3), keepdims=True)).sum(axis=1)
        if images.shape[1] > 1
        else (np.zeros(images.shape[:1] + images.shape[2:], dtype=np.float32))
    )


def brightness_map(images: np.ndarray) -> np.ndarray:
    return F.avg_pool2d(torch.from_numpy(images.mean(axis=1, keepdims=True)), 4).squeeze(1).numpy()


def contrast_map(images: np.ndarray) -> np.ndarray:
    grey = torch.from_numpy(images.mean(axis=1, keepdims=True))
    variance = F.avg_pool2d(grey**2, 4) - F.avg_pool2d(grey, 4) ** 2
    return variance.clamp(min=0).sqrt().squeeze(1).numpy()


def run(task: tuple) -> dict:
    name, normal_class, seed, settings, kinds = task
    torch.set_num_threads(1)
    started = time.perf_counter()
    data, config = load_set(name, normal_class, seed, settings)
    train, test = split_images(data, config)
    sample = np.resize(test.images, (256, *test.images.shape[1:]))
    record = {"set": name, "normal": normal_class, "seed": seed, "train_images": len(train)}
    if name == "digits":  # the label-free signals are judged leave one class out, on digits only
        record["signals"] = signals_with_mean(train, config)
    for kind, teacher in teachers(train, config, kinds).items():
        student = distill_image_student(teacher, train, config)
        result = evaluate_images(teacher, student, test, config)
        record[kind] = {
            **{f"teacher_{k}": v for k, v in result["teacher"].items()},
            **{f"student_{k}": v for k, v in result["student"].items()},
            "teacher_params": teacher.n_params,
            "student_params": params(student.net),
            "teacher_images_per_second": teacher_images_per_second(teacher, sample),
            "student_images_per_second": rows_per_second(student.score_images, sample),
        }
    if name != "digits":
        record["model_free"] = model_free(train, test)
    record["seconds"] = time.perf_counter() - started
    return record


def speeds(name: str, settings: dict) -> dict:
    """images/s of each teacher and its student on one thread, measured in turn in one process on an otherwise
    idle machine (the accuracy runs go two at a time, which slows both by up to 7× and the small student most).
    Speed does not depend on training: the networks, the memory bank (all training locations, up to bank_size)
    and the images are those of the accuracy runs; only the epochs are cut to one."""
    train, sample, config = speed_inputs(name, settings)
    result = {"set": name}
    for kind, teacher in teachers(train, config).items():
        student = distill_image_student(teacher, train, config)
        result[kind] = {
            "teacher": teacher_images_per_second(teacher, sample),
            "student": rows_per_second(student.score_images, sample),
        }
    return result


def teacher_images_per_second(teacher, sample: np.ndarray) -> float:
    """images/s of the teacher's map, timed as the student's score is (`rows_per_second`)."""
    return rows_per_second(lambda images: teacher.target_maps(torch.from_numpy(images)), sample)


def rates_in_turn(students: dict, teachers: dict, sample: np.ndarray, rounds: int = 2) -> dict[str, list[float]]:
    """images/s of each student and teacher, timed in turn in one process, `rounds` times: idle figures move by ~10 %
    from run to run, and taking turns spreads that drift over all of them."""
    rates = {}
    for _ in range(rounds):
        for name, student in students.items():
            rates.setdefault(name, []).append(rows_per_second(student.score_images, sample))
        for kind, teacher in teachers.items():
            rates.setdefault(kind, []).append(teacher_images_per_second(teacher, sample))
    return rates


def speed_inputs(name: str, settings: dict | None = None) -> tuple[ImageSet, np.ndarray, ImageConfig]:
    """(training images, 256 held-out images to time, config with one epoch) of a set's seed-0 run (digit 0)."""
    data, config = load_set(name, 0 if name == "digits" else None, 0, settings)
    config = config.model_copy(update={"teacher_epochs": 1, "epochs": 1})
    train, test = split_images(data, config)
    return train, np.resize(test.images, (256, *test.images.shape[1:])), config


def load_set(
    name: str, normal_class: int | None, seed: int, settings: dict | None = None
) -> tuple[ImageSet, ImageConfig]:
    """Digits at 32×32; a texture family generated at 128×128 and read at its config's size."""
    config = set_config(name, seed, settings)
    if name == "digits":
        return digits_set(normal_digit=normal_class, size=32), config
    with tempfile.TemporaryDirectory() as tmp:
        return load_image_set(write_textures(Path(tmp), family=name), config.size, 3, 16), config


def set_config(name: str, seed: int, settings: dict | None = None) -> ImageConfig:
    """A set's ImageConfig with `settings` changed: digits grey at 32 px, textures in colour at 64 px unless the
    settings give a `size`."""
    settings = settings or {}
    if name == "digits":
        return ImageConfig(size=32, channels=1, seed=seed).model_copy(update=settings)
    return ImageConfig(size=settings.get("size", 64), channels=3, seed=seed).model_copy(update=settings)


def stale_sets(records: list[dict], settings: dict) -> list[str]:
    """The sets whose recorded students are not the size these settings build (another `student_widths`, a changed
    default): resuming beside them would mix two students in one table."""
    stale = []
    for record in records:
        config = set_config(record["set"], record["seed"], settings)
        built = params(ImageStudentNet(config.channels, tuple(config.student_widths), size=config.size))
        recorded = {record[kind]["student_params"] for kind in TEACHER_KINDS if kind in record}
        if recorded - {built} and record["set"] not in stale:
            stale.append(record["set"])
    return stale


# ---- the report ------------------------------------------------------------------------------------------------


def rule_pick(record: dict, rule: str) -> str:
    return rule if rule in TEACHER_KINDS else chosen_kind(record["signals"], rule.split()[1])


def leave_one_class_out(digits: list[dict]) -> list[dict]:
    """For each digit: the rule with the best mean teacher AUROC on the other nine classes, and what it gives on
    the held-out digit (its teacher's and student's AUROC, averaged over seeds)."""
    rows = []
    for held in range(10):
        others = [r for r in digits if r["normal"] != held]
        mine = [r for r in digits if r["normal"] == held]
        score = {rule: np.mean([r[rule_pick(r, rule)]["teacher_auroc"] for r in others]) for rule in RULES}
        best = max(RULES, key=lambda rule: score[rule])
        picks = [rule_pick(r, best) for r in mine]
        rows.append(
            {
                "held_out": held,
                "rule": best,
                "rule_auroc_on_others": score[best],
                "picked": ", ".join(sorted(set(picks))),
                "teacher_auroc": np.mean([r[k]["teacher_auroc"] for r, k in zip(mine, picks)]),
                "student_auroc": np.mean([r[k]["student_auroc"] for r, k in zip(mine, picks)]),
                "best_fixed": max(np.mean([r[k]["teacher_auroc"] for r in mine]) for k in TEACHER_KINDS),
            }
        )
    return rows


def kinds_in(runs: list[dict]) -> list[str]:
    """The teachers every one of `runs` has (all three unless run with --teachers)."""
    return [kind for kind in TEACHER_KINDS if all(kind in r for r in runs)]


def mean_of(records: list[dict], kind: str, key: str) -> float:
    return float(np.mean([r[kind][key] for r in records]))


def digits_table(digits: list[dict]) -> str:
    head = " | ".join(f"{k} T / S" for k in TEACHER_KINDS)
    lines = [f"| normal digit | seeds | {head} |", "|---:|---:|" + "---|" * 3]
    by_class = [[r for r in digits if r["normal"] == c] for c in range(10)]
    for c, runs in enumerate(by_class):
        if not runs:
            continue
        cells = " | ".join(
            f"{mean_of(runs, k, 'teacher_auroc'):.4f} / {mean_of(runs, k, 'student_auroc'):.4f}" for k in TEACHER_KINDS
        )
        lines.append(f"| {c} | {len(runs)} | {cells} |")
    cells = " | ".join(
        f"**{mean_of(digits, k, 'teacher_auroc'):.4f} / {mean_of(digits, k, 'student_auroc'):.4f}**"
        for k in TEACHER_KINDS
    )
    lines.append(f"| mean | {len(digits)} | {cells} |")
    worst = " | ".join(
        "digit {0}: {1:.4f} / {2:.4f}".format(
            *min(
                (
                    (c, mean_of(runs, k, "teacher_auroc"), mean_of(runs, k, "student_auroc"))
                    for c, runs in enumerate(by_class)
                    if runs
                ),
                key=lambda t: t[1],
            )
        )
        for k in TEACHER_KINDS
    )
    lines.append(f"| worst (teacher) | | {worst} |")
    return "\n".join(lines)


def gaps_and_speed(records: list[dict], rates: list[dict]) -> str:
    idle = {r["set"]: r for r in rates}
    lines = [
        "| set | teacher | runs | student − teacher AUROC: mean (worst) | worst class/set gap (mean over seeds) "
        "| classes > 0.02 behind (mean over seeds) | idle images/s teacher / student (× faster) "
        "| × faster in the busy runs: mean (min) |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    for name in dict.fromkeys(r["set"] for r in records):
        runs = [r for r in records if r["set"] == name]
        for kind in kinds_in(runs):
            gaps = [r[kind]["student_auroc"] - r[kind]["teacher_auroc"] for r in runs]
            per_class = {}
            for r, gap in zip(runs, gaps):
                per_class.setdefault(r["normal"], []).append(gap)
            worst_class = min(per_class, key=lambda c: np.mean(per_class[c]))
            behind = sum(np.mean(class_gaps) < -0.02 for class_gaps in per_class.values())
            ratios = [r[kind]["student_images_per_second"] / r[kind]["teacher_images_per_second"] for r in runs]
            label = f"digit {worst_class}" if name == "digits" else name
            rate = idle.get(name, {}).get(kind)
            quiet = (
                rate and f"{rate['teacher']:,.0f} / {rate['student']:,.0f} (×{rate['student'] / rate['teacher']:.1f})"
            )
            lines.append(
                f"| {name} | {kind} | {len(runs)} | {np.mean(gaps):+.4f} ({min(gaps):+.4f}) "
                f"| {label}: {np.mean(per_class[worst_class]):+.4f} | {behind} of {len(per_class)} | {quiet or '—'} "
                f"| ×{np.mean(ratios):.1f} (×{min(ratios):.1f}) |"
            )
    return "\n".join(lines)


def textures_table(textures: list[dict]) -> str:
    lines = [
        "| family | seeds | teacher | AUROC teacher / student | pixel AUROC teacher / student |",
        "|---|---:|---|---|---|",
    ]
    for name in dict.fromkeys(r["set"] for r in textures):
        runs = [r for r in textures if r["set"] == name]
        for kind in kinds_in(runs):
            lines.append(
                f"| {name} | {len(runs)} | {kind} | {mean_of(runs, kind, 'teacher_auroc'):.4f} / "
                f"{mean_of(runs, kind, 'student_auroc'):.4f} | {mean_of(runs, kind, 'teacher_pixel_auroc'):.4f} / "
                f"{mean_of(runs, kind, 'student_pixel_auroc'):.4f} |"
            )
        for base in ("colour", "brightness", "contrast"):
            image = np.mean([r["model_free"][f"{base}_auroc"] for r in runs])
            pixel = np.mean([r["model_free"][f"{base}_pixel_auroc"] for r in runs])
            lines.append(f"| {name} | {len(runs)} | model-free: {base} | {image:.4f} | {pixel:.4f} |")
    return "\n".join(lines)


def loco_table(rows: list[dict]) -> str:
    lines = [
        "| held-out digit | rule chosen on the other nine (their mean teacher AUROC) | picks | teacher / student AUROC "
        "| best fixed teacher on this digit |",
        "|---:|---|---|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['held_out']} | {row['rule']} ({row['rule_auroc_on_others']:.4f}) | {row['picked']} "
            f"| {row['teacher_auroc']:.4f} / {row['student_auroc']:.4f} | {row['best_fixed']:.4f} |"
        )
    teacher, student = np.mean([r["teacher_auroc"] for r in rows]), np.mean([r["student_auroc"] for r in rows])
    lines.append(f"| mean | | | **{teacher:.4f} / {student:.4f}** | |")
    return "\n".join(lines)


def report(records: list[dict], rates: list[dict]) -> str:
    digits = [r for r in records if r["set"] == "digits"]
    textures = [r for r in records if r["set"] != "digits"]
    parts = []
    if digits:
        parts += ["### Digits one-vs-rest (teacher / student AUROC, mean over seeds)", digits_table(digits)]
        if len({r["normal"] for r in digits}) == 10:
            parts += ["### `teacher: auto`, leave one class out", loco_table(leave_one_class_out(digits))]
    if textures:
        parts += ["### Textures, with the model-free baselines", textures_table(textures)]
    parts += ["### Student − teacher gap and speed", gaps_and_speed(records, rates)]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/images.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="ImageConfig seeds (split, init, copies)")
    parser.add_argument("--sets", nargs="+", default=["digits", *FAMILIES], help="digits, woven, fabric")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--report-only", action="store_true", help="print the tables from --json; run nothing")
    parser.add_argument("--settings", type=json.loads, default={}, help="ImageConfig changes, e.g. '{\"epochs\": 50}'")
    parser.add_argument("--teachers", nargs="+", default=list(TEACHER_KINDS), choices=TEACHER_KINDS)
    parser.add_argument("--speed", action="store_true", help="then measure images/s alone, one set at a time")
    args = parser.parse_args()
    records = json.loads(args.json.read_text()) if args.json.exists() else []
    speed_file = args.json.with_name(args.json.stem + "_speed.json")
    if not args.report_only and (stale := stale_sets(records, args.settings)):
        print(
            f"{args.json} holds {', '.join(stale)} students of another size than these settings build: move it away "
            "to measure them, or print it with --report-only.",
            file=sys.stderr,
        )
        sys.exit(2)
    done = {(r["set"], r["normal"], r["seed"]) for r in records}
    tasks = [
        (name, normal, seed, args.settings, args.teachers)
        for seed in args.seeds
        for name in args.sets
        for normal in (range(10) if name == "digits" else [None])
        if (name, normal, seed) not in done
    ]
    if not args.report_only:
        with ProcessPoolExecutor(args.jobs) as pool:
            for future in as_completed([pool.submit(run, task) for task in tasks]):
                record = future.result()
                records.append(record)
                print(json.dumps({k: record[k] for k in ("set", "normal", "seed", "seconds")}), file=sys.stderr)
                args.json.write_text(json.dumps(records, indent=1) + "\n")
    if args.speed:
        speed_file.write_text(json.dumps([speeds(name, args.settings) for name in args.sets], indent=1) + "\n")
    print(report(records, json.loads(speed_file.read_text()) if speed_file.exists() else []))


if __name__ == "__main__":
    main()
