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
IMAGE_METRICS = (  # an image model's: per image, and per pixel where defect masks are known
    ("auroc", "image AUROC"),
    ("teacher_auroc", "the teacher's image AUROC"),
    ("pixel_auroc", "pixel AUROC"),
    ("fidelity", "fidelity to the teacher (Spearman)"),
    ("size_bytes", "size (bytes)"),
    ("params", "parameters"),
    ("images_per_second", "images/s, one thread"),
)
IMAGE_TEACHERS = {
    "autoencoder": "a convolutional autoencoder trained on the normal images; its map is the reconstruction error",
    "backbone": "a frozen ResNet-18's layer1–3 features; its map is the distance to the nearest normal location",
    "ensemble": "the autoencoder and the backbone, their standardised maps averaged",
}
IMAGE_DISTILLATION = (
    "size",
    "channels",
    "teacher_epochs",
    "epochs",
    "hint_weight",
    "synthetic_per_image",
    "elastic_per_image",
    "rearranged_per_image",
    "turned_per_image",
    "student_map",
    "standardise_images",
    "reduction",
    "weights",
)  # the image settings a reader compares runs by


@dataclass
class ModelCard:
    model_name: str
    version: str
    run_id: str
    created: str  # ISO time, UTC
    modality: str  # "tabular", "timeseries" or "image"
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
        f"## Metrics on held-out {'images' if card.modality == 'image' else 'rows'}\n" + _metrics(card),
        f"## Gate verdict: {_verdict(card)}\n" + "\n".join(f"- {reason}" for reason in card.reasons),
        f"## Compression\n{card.compression}",
        "## Known limitations\n" + "\n".join(f"- {item}" for item in _limitations(card)),
    ]
    return "\n\n".join(sections) + "\n"


def _verdict(card: ModelCard) -> str:
    return "PROMOTE" if card.promoted else "KEEP CHAMPION" if card.champion_version else "NOT PROMOTED"


def _intended_use(card: ModelCard) -> str:
    if card.modality == "image":
        return (
            f"Scores images (PNG or JPEG, by path or as bytes) with an anomaly map per image: a higher score is more "
            f"anomalous, and `is_anomaly` flags images above the threshold set so that {card.contamination:.1%} of "
            "the normal training images are flagged. Meant to send images of parts, surfaces or fabric to a person "
            "for inspection, with the map showing where to look; not to pass or reject on its own, and not for "
            "images that break the input contract (they are refused)."
        )
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
    if card.modality == "image":
        return "\n".join(
            [
                f"- source: `{card.data_source}`",
                f"- digest: `{card.data_digest}`",
                f"- images: {card.data_rows:,}",
                f"- split: {card.train_rows:,} normal images trained on, {card.test_rows:,} held out",
                f"- labels: {card.labels}",
            ]
        )
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
    if card.modality == "image":
        return _image_models(card)
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


def _image_models(card: ModelCard) -> str:
    kind, metrics, settings = card.teacher.get("kind", "?"), card.metrics, card.student.get("distill", {})
    scored = ", ".join(
        f"{label} {card.teacher[key]:.4f}"
        for key, label in (("auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))
        if key in card.teacher
    )
    teacher_size = f", {card.teacher['params']:,.0f} parameters" if "params" in card.teacher else ""
    return "\n".join(
        [
            f"- teacher: {kind}: {IMAGE_TEACHERS.get(kind, 'image teacher')}{teacher_size}"
            + (f"; held out: {scored}" if scored else ""),
            f"- student: convolutional, channel widths {card.student.get('hidden')}, {metrics.get('params', 0):,} "
            f"parameters, {metrics.get('size_bytes', 0):,} bytes; it alone scores each image",
            "- distillation: "
            + ", ".join(f"{key} {settings[key]}" for key in IMAGE_DISTILLATION if settings.get(key) not in (None, "")),
        ]
    )


def _metrics(card: ModelCard) -> str:
    champion = card.champion_metrics or {}
    header = f"| metric | this version | champion{f' (v{card.champion_version})' if card.champion_version else ''} |"
    rows = [header, "|---|---:|---:|"]
    for key, label in IMAGE_METRICS if card.modality == "image" else METRICS:
        if key in card.metrics or key in champion:
            rows.append(f"| {label} | {metric_text(card.metrics.get(key))} | {metric_text(champion.get(key))} |")
    if not card.champion_metrics:
        rows.append("")
        rows.append(
            f"Champion v{card.champion_version} was not scored on these rows: the gate verdict below says why."
            if card.champion_version
            else "No champion yet: there was none to compare with."
        )
    return "\n".join(rows)


def metric_text(value) -> str:
    """A metric as the card and the Prefect run page show it: 4 decimals, or a grouped whole number from 100."""
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"


def _limitations(card: ModelCard) -> list[str]:
    if card.modality == "image":
        return [
            "Held-out metrics come from images of the same set, not from future production; watch the drift reports.",
            "Defects unlike the held-out ones may score lower: the student learnt from normal images, damaged "
            "copies and the teacher's maps, never from real defects.",
            "The student imitates the teacher: it inherits the teacher's blind spots (fidelity above says how "
            "closely).",
        ] + card.limitations
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
