"""The command line the ADBench benchmarks share: set names (default: every set in --data), seeds, data folder, JSON."""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def adbench_arguments(doc: str, default_json: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("sets", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/adbench")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / default_json)
    args = parser.parse_args()
    if not args.sets:
        args.sets = sorted((p.stem for p in args.data.glob("*.npz")), key=lambda n: int(n.split("_")[0]))
    return args
