"""How the README's quick image settings were chosen (`make select-images-quick`): each candidate (the quick
settings with a few changed) trains a first model for every digit through the CLI (benchmarks/image_quick.py: a
folder of every scan of the digit and 20 other digits, 32×32, one run at a time, a fresh MLflow store per candidate),
then leave-one-class-out picks, for each digit, the candidate that passed the default gate for most of the *other*
nine (ties: the higher mean student AUROC there) and reports that candidate's run on the held-out digit. The
candidates' own rows are in-sample.

Usage: .venv/bin/python benchmarks/images_quick/choose.py [--json PATH] [--digits 0 1 ...]
(resumes from its JSON: a finished (candidate, digit) run is not trained again)
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from image_quick import settings_file, train_one  # noqa: E402  (benchmarks/ holds the script that trains one digit)

# Each candidate: the quick settings (benchmarks/images_quick/quick.yaml: 32 px grey, the autoencoder teacher with 20
# epochs) with these image settings changed; the hint term's weight is 0.5 unless set.
CANDIDATES = {
    "30 epochs, hint 0.5 (the quick settings before)": {"epochs": 30},
    "60 epochs, hint 0.5": {"epochs": 60},
    "30 epochs, no hint term": {"epochs": 30, "hint_weight": 0},
    "60 epochs, no hint term": {"epochs": 60, "hint_weight": 0},
}


def run_all(digits: list[int], out: Path) -> dict:
    done = json.loads(out.read_text()) if out.exists() else {}
    for name in CANDIDATES:
        with tempfile.TemporaryDirectory() as tmp:  # one MLflow store per candidate: no run gates against another's
            for digit in digits:
                if str(digit) in done.get(name, {}):
                    continue
                settings = settings_file(Path(tmp) / "candidate.yaml", **CANDIDATES[name])
                record = train_one(digit, Path(tmp), settings)
                done.setdefault(name, {})[str(digit)] = record
                out.write_text(json.dumps(done, indent=1) + "\n")
                print(name, json.dumps(record), flush=True)
    return done


def leave_one_class_out(done: dict, digits: list[int]) -> list[dict]:
    rows = []
    for held in digits:
        others = [str(d) for d in digits if d != held]

        def merit(name: str) -> tuple[int, float]:
            return passes_and_mean_auroc([done[name][d] for d in others])

        pick = max(CANDIDATES, key=merit)
        rows.append({"digit": held, "pick": pick, "others_passed": merit(pick)[0], **done[pick][str(held)]})
    return rows


def passes_and_mean_auroc(runs: list[dict]) -> tuple[int, float]:
    return sum(r["passed"] for r in runs), sum(r["auroc"] or 0 for r in runs) / len(runs)


def report(done: dict, digits: list[int]) -> str:
    header = "| candidate | passed the default gate | student AUROC (mean) | student − teacher: mean, worst | s |"
    lines = [header]
    lines.append("|---|---:|---:|---|---|")
    for name in CANDIDATES:
        runs = [done[name][str(d)] for d in digits]
        gaps = [r["auroc"] - r["teacher_auroc"] for r in runs if r["auroc"] and r["teacher_auroc"]]
        seconds = [r["seconds"] for r in runs]
        passed, auroc = passes_and_mean_auroc(runs)
        lines.append(
            f"| {name} | {passed} of {len(runs)} | {auroc:.4f} | {sum(gaps) / len(gaps):+.4f}, {min(gaps):+.4f} | "
            f"{min(seconds):.0f}–{max(seconds):.0f} |"
        )
    loco = leave_one_class_out(done, digits)
    header = "| held-out digit | picked on the other nine (their passes) | gate | AUROC |"
    lines += ["", "leave one class out:", "", header]
    lines.append("|---:|---|---|---:|")
    for row in loco:
        lines.append(f"| {row['digit']} | {row['pick']} ({row['others_passed']}) | {row['gate']} | {row['auroc']} |")
    lines.append(f"\nheld-out digits that passed: {sum(r['passed'] for r in loco)} of {len(loco)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--json", type=Path, default=HERE / "choice.json")
    args = parser.parse_args()
    if len(set(args.digits)) < 2:
        parser.error("leave one class out needs at least two digits")
    done = run_all(args.digits, args.json)
    print(report(done, args.digits))


if __name__ == "__main__":
    main()
