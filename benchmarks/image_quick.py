"""A new user's first image model, end to end (`make bench-images-quick`): for each digit, a folder of every
scikit-learn scan of it (~180, good/) and 20 other digits (other/) at 32×32 is trained through the CLI with the
README's quick settings (benchmarks/images_quick/quick.yaml) into a fresh sqlite MLflow store. Reported: the wall
time of `anomaly-distill train` (process start to exit, on this machine), the gate's verdict and the student's
held-out AUROC.

Usage: .venv/bin/python benchmarks/image_quick.py [--digits 0 1 ...] [--seed N] [--json PATH]
(--seed: the settings' `modality.image.seed`, which picks the split, the synthetic defects and the initial weights)
"""

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from anomaly_distill.image.image_data import write_digits

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "benchmarks/images_quick/quick.yaml"


def settings_file(path: Path, **image) -> Path:
    """The quick settings with these image settings changed, written to `path`."""
    quick = yaml.safe_load(SETTINGS.read_text())
    quick["modality"]["image"].update(image)
    path.write_text(yaml.safe_dump(quick))
    return path


def train_one(digit: int, tmp: Path, settings: Path = SETTINGS) -> dict:
    folder = tmp / f"digits-{digit}"
    if not folder.exists():
        write_digits(folder, digit)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
    command = [str(ROOT / ".venv/bin/anomaly-distill"), "train", "--modality", "image", "--data", str(folder)]
    command += ["--model-name", f"digits-{digit}", "--config", str(settings)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=env)
    seconds = time.perf_counter() - started
    out = done.stdout
    auroc = re.search(r"AUROC (\d\.\d+)", out)
    teacher = re.search(r"teacher's (\d\.\d+)", out)
    return {
        "digit": digit,
        "seconds": round(seconds, 1),
        "exit": done.returncode,
        "passed": "Gate: PASSED" in out,
        "auroc": float(auroc.group(1)) if auroc else None,
        "teacher_auroc": float(teacher.group(1)) if teacher else None,
        "gate": next((line for line in out.splitlines() if line.startswith("Gate:")), done.stderr[-300:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/images_quick/results.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = SETTINGS if args.seed is None else settings_file(Path(tmp) / "seeded.yaml", seed=args.seed)
        for digit in args.digits:
            results.append({"seed": args.seed, **train_one(digit, Path(tmp), settings)})
            print(json.dumps(results[-1]), flush=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    passed = sum(r["passed"] for r in results)
    print("\n| digit | seconds | gate | AUROC |\n|---:|---:|---|---:|")
    for r in results:
        print(f"| {r['digit']} | {r['seconds']:.0f} | {r['gate']} | {r['auroc']} |")
    print(
        f"\npassed the default gate: {passed} of {len(results)}; "
        f"wall time {min(r['seconds'] for r in results):.0f}–{max(r['seconds'] for r in results):.0f} s"
    )


if __name__ == "__main__":
    main()
