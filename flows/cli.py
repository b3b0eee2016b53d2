"""`anomaly-distill` command line. Orchestration imports happen inside the commands that need them."""

import argparse
import atexit
import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from anomaly_distill.config import BASELINES, EngineConfig, SettingsError, parse_settings
from anomaly_distill.errors import DataError
from flows.daemon import PREFECT_LOGGERS, forward_train, serve  # stdlib only: cheap at start-up
from flows.flags import add_flags, flag_values
from flows.parameters import DriftParameters, ScoringParameters
from flows.training_parameters import TrainingParameters
from serving.settings import ServeParameters

EXPECTED_ERRORS = (DataError, LookupError, ValidationError, SettingsError)  # bad data/settings, unknown model
REVIEW_STRATEGIES, REVIEW_DEFAULT = ("top", "uncertain"), "uncertain"  # as anomaly_distill.review (not imported here)


def read_settings(path: str | None) -> dict:
    """A --config YAML/JSON file as a mapping (empty without one); a file that is not a mapping is refused."""
    if not path:  # None, or "" from the MLflow project's default
        return {}
    file = Path(path)
    if not file.is_file():
        raise SettingsError(f"config file not found: {path}")
    try:
        settings = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise SettingsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(settings, dict):
        raise SettingsError(f"{path} must hold a mapping of settings, got {type(settings).__name__}")
    return settings


def load_config(path: str | None) -> EngineConfig:
    return parse_settings(EngineConfig, read_settings(path))


def cmd_benchmark(args: argparse.Namespace) -> int:
    if args.throughput_rows is None:
        args.throughput_rows = 20_000 if args.seeds else 50_000
    run = _series_benchmark if args.modality == "timeseries" else _table_benchmark
    records, skipped, text = run(args)
    print(text)
    if skipped:
        print("\nSkipped (cannot be evaluated):\n" + "\n".join(f"- {reason}" for reason in skipped))
    if args.json:
        _write_records(args.json, records)
        print(f"\nwrote {len(records)} records to {args.json}")
    return 0


def _series_benchmark(args: argparse.Namespace) -> tuple[list[dict], list[str], str]:
    from anomaly_distill.config import OnlineConfig, SeriesConfig
    from benchmarking.series_benchmark import (
        format_official,
        format_seeds,
        format_table,
        official_nab_scores,
        run_series_benchmark,
    )

    if not args.labels:
        raise DataError("the time-series benchmark needs --labels (a NAB-style label-window JSON)")
    chosen = read_settings(args.series_config)
    series = parse_settings(SeriesConfig, {"window": args.window, "timestamp_policy": args.timestamp_policy, **chosen})
    online = parse_settings(OnlineConfig, read_settings(args.online_config))
    records, skipped, nab = run_series_benchmark(
        args.paths,
        args.labels,
        series,
        load_config(args.config),
        args.timestamp_column,
        args.throughput_rows,
        args.protocol,
        args.seeds,
        args.workers,
        args.nab_results,
        online,
    )
    text = format_seeds(records, nab) if args.seeds or nab else format_table(records)
    if args.nab_scorer and nab:
        if not args.nab_results:
            raise DataError("--nab-scorer reads the files --nab-results writes: give both")
        official = official_nab_scores(args.nab_scorer, args.nab_results, list(nab), args.paths, args.labels)
        first = (args.seeds or [load_config(args.config).seed])[0]
        text += f"\n\nNAB's own scorer beside ours on the same files (seed {first}):\n\n" + format_official(
            nab, official, first
        )
    return records, skipped, text


def _table_benchmark(args: argparse.Namespace) -> tuple[list[dict], list[str], str]:
    from benchmarking import benchmark

    config = load_config(args.config)
    if not args.seeds:
        records = benchmark.run_benchmark(args.paths, config, args.label_column, args.throughput_rows)
        return records, [], benchmark.format_table(records)
    records = benchmark.run_seeds(
        args.paths,
        args.seeds,
        config,
        args.label_column,
        args.throughput_rows,
        tuple(args.baselines),
        args.workers,
        on_progress=lambda so_far: _write_records(args.json, so_far),
    )
    return records, [], benchmark.format_seeds(records)


def _write_records(path: str | None, records: list[dict]) -> None:
    if path:
        Path(path).write_text(json.dumps(records, indent=2))


def cmd_train(args: argparse.Namespace) -> int:
    code = forward_train(args.argv)  # None: no daemon named, or it declined
    if code is not None:
        return code
    from flows.embedded_api import start_embedded_api

    return _train(args, start_embedded_api())  # the API starts while the libraries import


def cmd_daemon(args: argparse.Namespace) -> int:
    return serve(args.socket, main)


def _train(args: argparse.Namespace, api) -> int:
    from anomaly_distill.data import NPZ_LABEL, column_names
    from flows.embedded_api import flow_settings
    from flows.training import run_training

    quiet_expected_failures()

    settings = read_settings(args.config)
    if args.modality and isinstance(settings.get("modality"), dict):  # the file's modality settings stay
        settings["modality"] = {**settings["modality"], "kind": args.modality}
        args.modality = None
    flags = flag_values(TrainingParameters, args)  # a flag given outranks the --config file
    settings.update({key: value for key, value in flags.items() if key not in TRAIN_NESTED})
    modality = {"modality": args.modality, "timestamp_column": args.timestamp_column, "labels_path": args.labels}
    settings.update({key: value for key, value in modality.items() if value is not None})
    params = parse_settings(TrainingParameters, settings)  # every key checked before any file is read
    if (
        "label_column" not in settings and "label_column" not in params.modality.unused_settings()
    ):  # unlabelled unless a `label` column exists
        label = NPZ_LABEL if NPZ_LABEL in column_names(params.data_path) else None
        params = params.model_copy(update={"label_column": label})
    if api is not None:
        from tasks import tracking, validation

        validation.warm_up()  # while the API is still starting: otherwise the validation task would import it
        tracking.warm_up()
    start = time.perf_counter()
    with flow_settings(api):
        outcome = run_training(params)
    print(training_summary(outcome, time.perf_counter() - start))
    return 0


def _speed(metrics: dict) -> str:
    if "images_per_second" in metrics:
        return f"{metrics['images_per_second']:,.0f} images/s"
    return f"{metrics['rows_per_second']:,.0f} rows/s"


def training_summary(outcome: dict, wall_seconds: float) -> str:
    from tasks.tracking import get_run, tracking_uri

    m = outcome["metrics"]
    lines = [
        "",
        f"Reused {outcome['model_name']} version {outcome['version']}: same data, parameters and code as its run"
        if outcome.get("reused_version")
        else f"Registered {outcome['model_name']} version {outcome['version']} (alias: challenger)",
        f"  {_held_out_quality(m)}  fidelity {m['fidelity']:.4f}  "
        f"params {m['params']:,}  size {m['size_bytes']:,} B  {_speed(m)}",
        f"Gate: {_gate_line(outcome)}",
        *[f"  - {reason}" for reason in outcome["reasons"]],
        f"Teacher {'reused from cache' if outcome['teacher_from_cache'] else 'trained'}; "
        f"MLflow run {outcome['run_id']}",
        f"Time: {wall_seconds:.1f} s in the flow, of which compute "
        + ", ".join(f"{stage} {s:.1f} s" for stage, s in outcome["seconds"].items())
        + f"; orchestration + tracking {wall_seconds - sum(outcome['seconds'].values()):.1f} s",
        f"MLflow UI: {tracking_ui(tracking_uri(), get_run(outcome['run_id']).info.experiment_id)}",
    ]
    return "\n".join(lines)


def tracking_ui(uri: str, experiment: str) -> str:
    """Where to see the runs: the experiment's page on a server; with a sqlite store, how to start the UI first."""
    from tasks.tracking import experiment_url

    if uri.startswith(("http://", "https://")):
        return experiment_url(uri, experiment)
    return f"mlflow ui --backend-store-uri {uri}   (then open {experiment_url('http://127.0.0.1:5000', experiment)})"


def cmd_promote(args: argparse.Namespace) -> int:
    from stores import registry

    previous = registry.promote(args.model_name, args.version, "manual promotion (CLI)")
    print(f"{args.model_name}: champion -> v{args.version} (was {f'v{previous}' if previous else 'none'})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from stores import registry

    old, new = registry.rollback(args.model_name)
    print(f"{args.model_name}: champion rolled back v{old} -> v{new}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from flows.embedded_api import flow_settings, start_embedded_api

    api = start_embedded_api()  # the API starts while the libraries import
    from flows.scoring import run_batch_scoring

    quiet_expected_failures()

    given = flag_values(ScoringParameters, args)
    if args.model_name:
        if "model_uri" in given:
            raise SettingsError("--model-name and --model-uri: give one (the name means models:/NAME@champion)")
        given["model_uri"] = f"models:/{args.model_name}@champion"
    parameters = ScoringParameters(**given)
    with flow_settings(api):
        result = run_batch_scoring(parameters)
    print(
        f"Scored {result['rows']:,} rows with {result['model_name']} v{result['model_version']}: "
        f"{result['anomalies']:,} anomalies, {result['rows_per_second']:,.0f} rows/s"
        + (f"; wrote {result['out_path']}" if result["out_path"] else "")
    )
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from flows.drift import drift_monitoring

    quiet_expected_failures()

    summary = drift_monitoring(DriftParameters(**flag_values(DriftParameters, args)))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    retrain = summary.get("retrain")
    if retrain:
        print(f"Retrained: version {retrain['version']}, gate {'passed' if retrain['promoted'] else 'failed'}")
    return 0


def _held_out_quality(metrics: dict) -> str:
    if "auroc" not in metrics:
        return "AUROC n/a (held-out rows lack labels of both classes)"
    auprc = f"  AUPRC {metrics['auprc']:.4f}" if "auprc" in metrics else ""
    return f"AUROC {metrics['auroc']:.4f}{auprc}"


def _gate_line(outcome: dict) -> str:
    if outcome["promoted"]:
        return "PASSED -> now champion"
    held = any(reason.startswith("HOLD:") for reason in outcome["reasons"])
    return "HELD for a person -> champion unchanged" if held else "FAILED -> champion unchanged"


def cmd_serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import API_KEY_ENV, SERVE_ENV, is_loopback

    serve = ServeParameters(**flag_values(ServeParameters, args))
    if not os.environ.get(API_KEY_ENV) and not is_loopback(serve.host):
        print(
            f"error: --host {serve.host} lets other machines in; set {API_KEY_ENV} to an API key first "
            "(clients then send 'Authorization: Bearer <key>')",
            file=sys.stderr,
        )
        return 2
    os.environ[SERVE_ENV] = json.dumps(serve.app_settings())  # each worker process builds its app from these
    uvicorn.run(
        "serving.app:app_from_environment",
        factory=True,
        host=serve.host,
        port=serve.port,
        workers=serve.workers,
        log_level="info",
        access_log=False,  # a log line per request costs more than scoring one row
    )
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from anomaly_distill.data import UNLABELLED, check_labels, read_frame
    from stores.live_store import ROW_ID, LiveStore, live_store_url
    from tasks.drift import LABEL, feedback_store

    frame = read_frame(args.data)
    missing = [c for c in (ROW_ID, LABEL) if c not in frame.columns]
    if missing:
        raise DataError(f"feedback needs columns {ROW_ID!r} and {LABEL!r}; missing {missing}")
    labels = check_labels(frame[LABEL])  # 0, 1, or an empty cell: not reviewed
    url = live_store_url(args.live_store)
    unknown = sorted(set(frame[ROW_ID].astype(str)) - set(LiveStore(url).read().get(ROW_ID, [])))
    if unknown:
        raise DataError(f"{len(unknown)} row ids are not in the live store at {url}, e.g. {unknown[:5]}")
    given = labels != UNLABELLED
    if given.any():
        rows = frame.loc[given, [ROW_ID]].astype(str)
        feedback_store(url).append(rows.assign(**{LABEL: labels[given].astype("int64")}))
    skipped = int((~given).sum())
    print(
        f"attached {int(given.sum()):,} labels ({int((labels == 1).sum()):,} anomalies) to live rows in {url}"
        + (f"; {skipped:,} rows with an empty label were left out (not reviewed)" if skipped else "")
    )
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from stores.live_store import live_store_url
    from tasks.live_rows import StoreUnreachable
    from tasks.review import STRATEGY_NOTES, review_file, review_queue_rows
    from tasks.scoring import write_table_file

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    url = live_store_url(args.live_store)
    try:
        queue, facts = review_queue_rows(args.model_name, args.k, args.strategy, url, args.window, args.explain)
    except StoreUnreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(review_table(args, queue, facts, STRATEGY_NOTES))
    if args.csv:
        write_table_file(review_file(queue), args.csv, "the review file")
        print(
            f"\nwrote {args.csv}: fill its label column (1 = anomaly, 0 = normal, empty = not reviewed), then "
            f"hand it back: anomaly-distill feedback --data {args.csv} --live-store {url}"
        )
    return 0


def review_table(args: argparse.Namespace, queue, facts: dict, notes: dict[str, str]) -> str:
    """What the queue holds and why these rows, one line per row, then the strategies to choose from."""
    unreviewed = facts["rows"] - facts["reviewed"]
    head = (
        f"{args.model_name} v{facts['version']} (champion): {len(queue):,} of {unreviewed:,} unreviewed live rows "
        f"({facts['reviewed']:,} of {facts['rows']:,} already labelled); strategy {args.strategy!r}"
    )
    width = max([len("row_id"), *map(len, queue["row_id"])])
    rows = [f"{'row_id':<{width}}  {'score':>10}  {'flagged':<7}  explanation"] + [
        f"{row.row_id:<{width}}  {row.score:>10.4g}  {'yes' if row.is_anomaly else 'no':<7}  {row.explanation}"
        for row in queue.itertuples(index=False)
    ]
    strategies = [f"  {name}{' (default)' if name == REVIEW_DEFAULT else ''}: {note}" for name, note in notes.items()]
    return "\n".join([head, "", *rows, "", "Strategies (--strategy):", *strategies])


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.deployments import serve_all

    serve_all(
        data_path=str(Path(args.data).resolve()),
        model_name=args.model_name,
        label_column=args.label_column,
        cron=args.cron,
        timezone=args.timezone,
        drift_interval_seconds=args.drift_interval,
        live_window=args.live_window or None,
        outage_seconds=args.outage_seconds,
    )
    return 0


# Settings of `train` that are trees (the engine, the gate, a modality's own): given in the --config file; the
# modality's commonest ones also as the flags --modality, --timestamp-column and --labels.
TRAIN_NESTED = ("engine", "gate", "modality")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomaly-distill", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("benchmark", help="teacher vs student vs PyOD baselines on labelled datasets")
    bench.add_argument("paths", nargs="+", help="dataset files (.npz with X/y, or CSV/Parquet with --label-column)")
    bench.add_argument("--json", help="write the records to this JSON file")
    bench.add_argument("--label-column", help="label column (1 = anomaly) for CSV/Parquet files")
    bench.add_argument("--config", help="YAML/JSON file with engine settings (see anomaly_distill/config.py)")
    bench.add_argument(
        "--throughput-rows",
        type=int,
        help="rows scored per throughput measurement (held-out rows, tiled if fewer; default 50,000, "
        "20,000 with --seeds)",
    )
    bench.add_argument("--modality", choices=["tabular", "timeseries"], default="tabular")
    bench.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run every set once per seed (its own split and initialisation) and summarise across sets: "
        "mean±std over seeds, average rank, win/tie/loss and Wilcoxon p (throughput default then 20,000 rows)",
    )
    bench.add_argument("--workers", type=int, default=1, help="with --seeds: (set, seed) jobs run at a time")
    bench.add_argument(
        "--protocol",
        choices=["split", "nab"],
        default="split",
        help="timeseries: split = train/validation/test periods of SeriesConfig; nab = NAB's rules: the online "
        "detector (student and teacher) replays every file point by point, learning from each point once scored, "
        "beside the frozen models fitted on the probationary period (first 15%%, at most 750 points); every point "
        "after it is scored and the NAB score reported (standard, reward-low-FP, reward-low-FN)",
    )
    bench.add_argument(
        "--nab-results",
        help="timeseries: write per-point scores in [0, 1] in NAB's results layout under this folder "
        "(<detector>/<folder>/<detector>_<file>.csv; other seeds than the first as <detector>-seed<N>)",
    )
    bench.add_argument(
        "--online-config",
        help="timeseries, --protocol nab: YAML/JSON with OnlineConfig settings for the online detector (see "
        "anomaly_distill/config.py)",
    )
    bench.add_argument(
        "--nab-scorer",
        help="timeseries, --protocol nab: NAB's own scorer (score.sh RESULTS DETECTORS, e.g. "
        "../shared/nab-scorer/score.sh), run over --nab-results and printed beside our scores",
    )
    bench.add_argument(
        "--baselines",
        nargs="+",
        choices=list(BASELINES),
        default=list(BASELINES),
        help="with --seeds (tabular): the PyOD baselines (default: all six)",
    )
    bench.add_argument("--labels", help="timeseries: NAB-style label-window JSON (keys end in <folder>/<file>.csv)")
    bench.add_argument("--timestamp-column", default="timestamp", help="timeseries: the timestamp column")
    bench.add_argument("--window", type=int, default=32, help="timeseries: points per window")
    bench.add_argument(
        "--series-config",
        help="timeseries: YAML/JSON with SeriesConfig settings (they win over "
        "--window/--timestamp-policy; see anomaly_distill/config.py)",
    )
    bench.add_argument(
        "--timestamp-policy",
        choices=["strict", "file_order"],
        default="file_order",
        help="timeseries: file_order (default here) keeps repeated/backward timestamps in file order, "
        "as NAB's files have them at daylight-saving changes; strict refuses them, as training does",
    )
    bench.set_defaults(func=cmd_benchmark)

    train = commands.add_parser("train", help="run the training pipeline (Prefect flow, MLflow tracking + registry)")
    train.add_argument("--config", help="YAML file with any training parameter (flows/training_parameters.py)")
    add_flags(train, TrainingParameters, skip=TRAIN_NESTED + ("label_column",), names={"data_path": "--data"})
    train.add_argument(  # not the model's default: without the flag, the file decides
        "--label-column",
        default=argparse.SUPPRESS,
        help="label column (1 = anomaly); empty: unlabelled (default: `label` if the file has one, else none)",
    )
    train.add_argument(
        "--modality",
        choices=["tabular", "timeseries", "image"],
        help="timeseries: timestamp + value columns; image: --data is a folder (good/ + defect folders) or manifest",
    )
    train.add_argument("--timestamp-column", help="timeseries: the timestamp column (default: timestamp)")
    train.add_argument("--labels", help="timeseries: NAB-style label-window JSON for evaluation")
    train.set_defaults(func=cmd_train)

    score = commands.add_parser("score", help="score a file with a registered model (batch-scoring flow)")
    add_flags(score, ScoringParameters, names={"data_path": "--data", "out_path": "--out"})
    score.add_argument("--model-name", help="shortcut for --model-uri models:/NAME@champion")
    score.set_defaults(func=cmd_score)

    drift = commands.add_parser("drift", help="Evidently drift report of live rows vs the champion's training data")
    add_flags(drift, DriftParameters)
    drift.add_argument("--json", help="write the drift summary here")
    drift.set_defaults(func=cmd_drift)

    serve = commands.add_parser("serve-api", help="online scoring service (FastAPI) for the champion")
    add_flags(serve, ServeParameters)
    serve.set_defaults(func=cmd_serve_api)

    daemon = commands.add_parser(
        "daemon",
        help="resident process that runs `train` against running servers without paying the imports each time; "
        "commands use it when $ANOMALY_DISTILL_DAEMON names its socket",
    )
    daemon.add_argument("--socket", required=True, help="Unix socket path to listen on (created with mode 0600)")
    daemon.set_defaults(func=cmd_daemon)

    feedback = commands.add_parser("feedback", help="attach delayed true labels to scored live rows by row_id")
    feedback.add_argument(
        "--data",
        required=True,
        help="CSV/Parquet with columns row_id and label (1 = anomaly, 0 = normal, empty = not reviewed: left out)",
    )
    feedback.add_argument("--live-store", help="live store URL (default $ANOMALY_DISTILL_LIVE_STORE or ./live-store)")
    feedback.set_defaults(func=cmd_feedback)

    review = commands.add_parser(
        "review",
        help="the unlabelled live rows most worth a person's look, with score, flag and explanation; --csv writes "
        "them with an empty label column for `feedback`",
    )
    review.add_argument("--model-name", required=True, help="registered model; its champion scores and explains")
    review.add_argument("--k", type=int, default=20, help="rows to list (default 20)")
    review.add_argument(
        "--strategy",
        choices=REVIEW_STRATEGIES,
        default=REVIEW_DEFAULT,
        help="top (default): the highest scores, the alerts a team reviews anyway and mostly anomalies, which is "
        "what the teacher learns from; uncertain: the scores nearest the alarm threshold, which tell the boundary "
        "apart but are mostly normal",
    )
    review.add_argument("--csv", help="write the rows here with an empty label column, to fill in and hand to feedback")
    review.add_argument("--live-store", help="live store URL (default $ANOMALY_DISTILL_LIVE_STORE or ./live-store)")
    review.add_argument("--window", help="only live rows from this far back (1d, 12h); default: every stored row")
    review.add_argument("--explain", type=int, default=3, metavar="K", help="columns named per explanation (3)")
    review.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI)")
    review.set_defaults(func=cmd_review)

    deploy = commands.add_parser("deploy", help="serve the deployments against a running Prefect server")
    deploy.add_argument("--data", required=True, help="training table the nightly retrain reads")
    deploy.add_argument("--model-name", default="anomaly-detector")
    deploy.add_argument("--label-column", default=None)
    deploy.add_argument("--cron", default="0 2 * * *", help="nightly-retrain schedule (default 02:00)")
    deploy.add_argument("--timezone", default="UTC")
    deploy.add_argument("--drift-interval", type=int, default=3600, help="seconds between drift checks")
    deploy.add_argument(
        "--live-window", default="7d", help="nightly-retrain also trains on the live rows of this far back ('': none)"
    )
    deploy.add_argument(
        "--outage-seconds", type=float, default=300, help="how long to wait for a Prefect API that went away"
    )
    deploy.set_defaults(func=cmd_deploy)

    promote = commands.add_parser("promote", help="point the champion alias at a model version")
    promote.add_argument("--model-name", required=True)
    promote.add_argument("--version", required=True)
    promote.set_defaults(func=cmd_promote)

    rollback = commands.add_parser("rollback", help="move the champion alias back to the previous champion")
    rollback.add_argument("--model-name", required=True)
    rollback.set_defaults(func=cmd_rollback)
    for command in commands.choices.values():  # `anomaly-distill train … --verbose` as well as before the command
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


VERBOSE_HELP = "also show the libraries' warnings and progress bars and Prefect's per-task lines"


class ExpectedFailureFilter(logging.Filter):
    """Bad input or settings are an expected outcome: Prefect's log keeps the reason, without the stack trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, EXPECTED_ERRORS):
            record.exc_info, record.exc_text = None, None
        return True


class EngineChatterFilter(logging.Filter):
    """On the console, below warnings: Prefect's own per-run lines ("Finished in state Completed()") and other
    libraries' INFO lines go; the run's lines (the flow's log, what its tasks print) stay. The Prefect UI's log
    keeps everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        engine = record.pathname.endswith(("task_engine.py", "flow_engine.py"))
        runs = record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        message = record.getMessage()
        if engine and any(name in message for name in _expected_error_names()):
            return False  # bad input: the command's own `error:` line says it once
        if message.startswith("Still processing items"):
            return False  # Prefect flushing its events at exit
        if engine and " - Retry " in message:
            return True  # a step that failed and will be tried again: what an operator watches for
        return record.levelno >= logging.WARNING or (runs and not engine)


def _expected_error_names() -> set[str]:
    found, todo = set(), list(EXPECTED_ERRORS)
    while todo:
        error = todo.pop()
        found.add(error.__name__)
        todo += error.__subclasses__()
    return found


def quiet_expected_failures() -> None:
    """On the handlers Prefect sets up (console, API): installed once Prefect is imported."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in PREFECT_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, ExpectedFailureFilter) for f in handler.filters):
                handler.addFilter(ExpectedFailureFilter())
            chatter = any(isinstance(f, EngineChatterFilter) for f in handler.filters)
            if QUIET["on"] and isinstance(handler, PrefectConsoleHandler) and not chatter:
                handler.addFilter(EngineChatterFilter())


QUIET = {"on": False}  # set by main: no --verbose


def quiet_libraries() -> None:
    """Only the project's lines: no library warnings, MLflow's INFO lines or its download progress bars."""
    import os
    import warnings

    QUIET["on"] = True
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers' level when imported
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)  # Prefect logs warnings: some come past the filters
    for name in ("great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    import os

    # The embedded Prefect API can take longer than Prefect's 20 s to start on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no calls home from the embedded API
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        return args.func(args)
    except (
        DataError,
        LookupError,
        ValidationError,
        SettingsError,
    ) as error:  # bad data/settings, unknown model or version
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        server = unreachable_server(error)
        if server is None:
            raise
        print(
            f"error: {server} did not answer ({type(error).__name__}: {str(error)[:300]}). Start it again and "
            "re-run the same command: cached steps are reused and no duplicate model version is made.",
            file=sys.stderr,
        )
        return 3


def unreachable_server(error: BaseException) -> str | None:
    """Which server an exception (or one it was raised from) says is down: the run cannot go on without it."""
    import os

    import httpx
    import requests
    from mlflow.exceptions import MlflowException

    from stores.registry import RegistryUnreachable
    from tasks.live_rows import StoreUnreachable

    while error is not None:
        if isinstance(error, (RegistryUnreachable, StoreUnreachable)):
            return str(error).partition(" could not be read")[0]
        if isinstance(error, httpx.TransportError) or (  # 503: the server is up, its database is not
            isinstance(error, httpx.HTTPStatusError) and error.response.status_code in (502, 503, 504)
        ):
            return f"the Prefect API at {os.environ.get('PREFECT_API_URL', '(ephemeral)')}"
        if isinstance(error, requests.ConnectionError) or (
            isinstance(error, MlflowException) and "API request to" in str(error)
        ):
            return f"the MLflow tracking server at {os.environ.get('MLFLOW_TRACKING_URI')}"
        error = error.__cause__ or error.__context__
    return None


def console() -> None:
    """The `anomaly-distill` command: `main`, every exit handler (Prefect's log and event flushes, its server stop,
    MLflow's), then an exit that skips the interpreter's teardown — which takes ~3 s after a training run and
    does nothing a user needs (files, databases and the tracking store are complete by then)."""
    status = {"code": 1}  # an uncaught exception: its traceback is printed before the exit handlers run
    atexit.register(lambda: _exit_skipping_teardown(status["code"]))  # registered first, so it runs last
    try:
        status["code"] = main()
    except SystemExit as stop:  # argparse's exit 2, --help's 0
        status["code"] = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        raise
    if status["code"] == 3:
        _exit_after_a_brief_flush(status["code"])
    sys.exit(status["code"])


def _exit_after_a_brief_flush(code: int) -> None:
    """A server did not answer: at exit Prefect's event and log queues send each item to the API, retrying and
    timing out item by item when that API is the server that went away (3.5 min after a killed Prefect server,
    long after the error was printed). They get a few seconds, which is plenty when the API is up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)
    _exit_skipping_teardown(code)


def _exit_skipping_teardown(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
