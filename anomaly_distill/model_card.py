"""The model card of a registered version: what it is for, what it learned from, how it scored beside the
champion, what the gate said, and what it cannot do. Markdown, built from facts the training flow gathered."""

from dataclasses import dataclass, field

METRICS = (  # (key, label), in the order a reader compares them
    ("auroc", "AUROC"),
    ("auprc", "AUPRC"),
    ("recall_at_1pct_fpr", "recall at 1 % false alarms"),
    ("f1", "F1 at the threshold"),
    ("fidelity", "fidelity to the teacher (Spearman)"),
    ("size_bytes", "size (bytes)"),
    ("params", "parameters"),
    ("rows_per_second", "rows/s, one thread"),
)


@dataclass
class ModelCard:
    model_name: str
    version: str
    run_id: str
    created: str  # ISO time, UTC
    modality: str  # "tabular" or "timeseries"
    data_source: str
    data_digest: str
    data_rows: int  # rows of the file
    rows_used: int  # rows trained and evaluated on (a sample of a larger file)
    train_rows: int
    test_rows: int
    labels: str | None  # where the labels came from ("column `label`"); None: unsupervised
    contract: dict  # the input contract as registered
    teacher: dict  # kind, detectors, held-out metrics
    student: dict  # hidden widths, distillation settings
    metrics: dict
    champion_version: str | None
    champion_metrics: dict | None
    promoted: bool
    reasons: list[str]
    contamination: float
    compression: str = "none: float32 weights (PyTorch), exported to ONNX"
    git_commit: str = ""
    limitations: list[str] = field(default_factory=list)


def render_model_card(card: ModelCard) -> str:
    sections = [
        f"# Model card: {card.model_name} v{card.version}",
        f"Distilled anomaly-detection student, registered {card.created} from MLflow run `{card.run_id}`"
        + (f" (code {card.git_commit[:12]})" if card.git_commit else "")
        + ".",
        "## Intended use\n" + _intended_use(card),
        "## Data\n" + _data(card),
        "## Input contract\n" + _contract(card.contract),
        "## Teacher and student\n" + _models(card),
        "## Metrics on held-out rows\n" + _metrics(card),
        f"## Gate verdict: {'PROMOTE' if card.promoted else 'KEEP CHAMPION'}\n"
        + "\n".join(f"- {reason}" for reason in card.reasons),
        f"## Compression\n{card.compression}",
        "## Known limitations\n" + "\n".join(f"- {item}" for item in _limitations(card)),
    ]
    return "\n\n".join(sections) + "\n"


def _intended_use(card: ModelCard) -> str:
    what = {
        "timeseries": "each point of a time series (with the window of points before it)",
        "image": "images (PNG or JPEG, by path or as bytes), with an anomaly map per image",
    }.get(card.modality, "rows with the input columns below")
    return (
        f"Scores {what}: a higher score is more anomalous, and `is_anomaly` flags scores above the threshold set "
        f"so that {card.contamination:.1%} of the training rows are flagged. Meant to rank events for review "
        "(fraud, intrusion, equipment faults) quickly and on small devices; not to decide about people or "
        "assets without a person's review, and not for data that breaks the input contract (it is refused)."
    )


def _data(card: ModelCard) -> str:
    lines = [
        f"- source: `{card.data_source}`",
        f"- digest: `{card.data_digest}`",
        f"- rows: {card.data_rows:,} in the file"
        + (f", a uniform sample of {card.rows_used:,} used" if card.rows_used < card.data_rows else ""),
        f"- split: {card.train_rows:,} training rows, {card.test_rows:,} held out",
        f"- labels: {card.labels or 'none (unsupervised)'}",
    ]
    return "\n".join(lines)


def _contract(contract: dict) -> str:
    if contract.get("kind") == "image":
        size, channels = contract.get("size"), contract.get("channels")
        return (
            f"- images resized to {size}×{size}, {channels} channel(s); smaller than {contract.get('min_size')} "
            "pixels a side, unreadable or of other channels: refused with the file named"
        )
    if contract.get("kind") == "timeseries":
        values = contract.get("value_columns", [])
        window = contract.get("series", {}).get("window")
        return (
            f"- time series: timestamp `{contract.get('timestamp_column')}`, values {_names(values)}\n"
            f"- window: {window} points; gaps in the training series: {contract.get('gaps', 0)}"
        )
    features = contract.get("features", [])
    lines = [f"- {len(features)} numeric features: {_names(features)}"]
    if contract.get("segment_column"):
        lines.append(f"- segment column `{contract['segment_column']}`: one student per segment")
    if contract.get("ranges"):
        ranges, mostly = len(contract["ranges"]), contract.get("mostly")
        lines.append(f"- value ranges checked for {ranges} columns (share that must lie within: {mostly})")
    lines.append("- missing, infinite or text values are refused with the row and column named")
    return "\n".join(lines)


def _names(names: list[str], shown: int = 12) -> str:
    listed = ", ".join(f"`{n}`" for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _models(card: ModelCard) -> str:
    teacher = card.teacher
    ensemble = teacher.get("kind") == "ensemble" and teacher.get("detectors")  # the others have no members
    members = f" ({', '.join(teacher['detectors'])})" if ensemble else ""
    scored = ", ".join(f"{label} {teacher[key]:.4f}" for key, label in METRICS[:3] if key in teacher)
    student = card.student
    return "\n".join(
        [
            f"- teacher: {teacher.get('kind', '?')}{members}" + (f"; held out: {scored}" if scored else ""),
            f"- student: MLP, hidden widths {student.get('hidden')}, {card.metrics.get('params', 0):,} parameters, "
            f"{card.metrics.get('size_bytes', 0):,} bytes",
            f"- distillation: {', '.join(f'{k} {v}' for k, v in student.get('distill', {}).items())}",
        ]
    )


def _metrics(card: ModelCard) -> str:
    champion = card.champion_metrics or {}
    header = f"| metric | this version | champion{f' (v{card.champion_version})' if card.champion_version else ''} |"
    rows = [header, "|---|---:|---:|"]
    for key, label in METRICS:
        if key in card.metrics or key in champion:
            rows.append(f"| {label} | {_value(card.metrics.get(key))} | {_value(champion.get(key))} |")
    if not card.champion_metrics:
        rows.append("")
        rows.append("No champion was scored on these rows (none yet, or it could not be loaded: see the verdict).")
    return "\n".join(rows)


def _value(value) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"


def _limitations(card: ModelCard) -> list[str]:
    items = [
        "Held-out metrics come from rows of the same data set, not from future data; watch the drift reports.",
        f"The threshold flags about {card.contamination:.1%} of rows like the training rows; the real share of "
        "anomalies may differ.",
        "The student imitates the teacher: it inherits the teacher's blind spots (fidelity above says how closely).",
    ]
    if not card.labels:
        items.append("No labels: AUROC and the champion comparison on AUROC could not be checked, only fidelity.")
    if card.rows_used < card.data_rows:
        items.append(
            f"Trained on a sample ({card.rows_used:,} of {card.data_rows:,} rows); every row was checked for "
            "missing, infinite and text values."
        )
    return items + card.limitations
