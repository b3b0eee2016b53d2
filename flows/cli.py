"""`anomaly-distill` command line. Orchestration imports happen inside the commands that need them."""
import argparse
import json
import sys
from pathlib import Path

import yaml

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import DataError


def load_config(path: str | None) -> EngineConfig:
    if path is None:
        return EngineConfig()
    text = Path(path).read_text()
    return EngineConfig.model_validate(yaml.safe_load(text) or {})


def cmd_benchmark(args: argparse.Namespace) -> int:
    from anomaly_distill.benchmark import format_table, run_benchmark

    records = run_benchmark(args.paths, load_config(args.config), args.label_column, args.throughput_rows)
    print(format_table(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))
        print(f"\nwrote {len(records)} records to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomaly-distill", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("benchmark", help="teacher vs student vs PyOD baselines on labelled datasets")
    bench.add_argument("paths", nargs="+", help="dataset files (.npz with X/y, or CSV/Parquet with --label-column)")
    bench.add_argument("--json", help="write the records to this JSON file")
    bench.add_argument("--label-column", help="label column (1 = anomaly) for CSV/Parquet files")
    bench.add_argument("--config", help="YAML/JSON file with engine settings (see anomaly_distill/config.py)")
    bench.add_argument("--throughput-rows", type=int, default=50_000,
                       help="rows scored per throughput measurement (held-out rows, tiled if fewer)")
    bench.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
