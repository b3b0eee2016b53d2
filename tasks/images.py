"""Prefect tasks of the image flow: the contract check, teacher, student, evaluation with anomaly-map overlays."""

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.config import ImageConfig
from anomaly_distill.contract import ImageContract
from anomaly_distill.detector import size_bytes
from anomaly_distill.image import image_pipeline
from anomaly_distill.image.image_data import ImageSet, check_images, image_files, load_image_set
from anomaly_distill.metrics import rows_per_second
from tasks import tracking
from tasks.common import IO_RETRIES

OVERLAYS = 6  # highest-scoring held-out images logged with their maps


@task(cache_policy=NO_CACHE)
def load_images(data_path: str, config: ImageConfig) -> tuple[ImageSet, ImageContract, str]:
    """The image contract first (every failing file named; nothing trains), then the images, resized."""
    data = load_image_set(data_path, config.size, config.channels, config.min_size)
    digest = hashlib.sha256()
    for path in data.paths:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    contract = ImageContract(
        size=config.size, channels=config.channels, min_size=config.min_size, embedding_dim=config.student_widths[1]
    )
    return data, contract, digest.hexdigest()


def image_set_params(data: ImageSet, digest: str) -> dict:
    """The run's parameters about its images: counts per class, and the data digest (the model card's, too)."""
    labels = {"normal": int((data.labels == 0).sum()), "defect": int((data.labels == 1).sum())}
    return {"images": len(data), **{f"images_{k}": v for k, v in labels.items()}, "data_digest": digest[:16]}


@task(cache_policy=NO_CACHE)
def train_teacher(train: ImageSet, config: ImageConfig) -> image_pipeline.AnyImageTeacher:
    return image_pipeline.train_image_teacher(train, config)


@task(cache_policy=NO_CACHE)
def distill_student(
    teacher: image_pipeline.AnyImageTeacher, train: ImageSet, config: ImageConfig
) -> image_pipeline.ImageDetector:
    return image_pipeline.distill_image_student(teacher, train, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate(teacher, student, test: ImageSet, config: ImageConfig, run_ids: list[str]) -> dict:
    """Image (and, with masks, pixel) AUROC of both, fidelity, size and single-thread images/s; overlays."""
    result = image_pipeline.evaluate_images(teacher, student, test, config)
    speed = rows_per_second(student.score_rows, np.resize(test.images, (64, *test.images.shape[1:])))
    metrics = {
        **result["student"],
        **({"teacher_auroc": result["teacher"]["auroc"]} if "auroc" in result["teacher"] else {}),
        "size_bytes": size_bytes(student),
        "params": student.n_params,
        "images_per_second": speed,
        "rows_per_second": speed,  # what the gate's speed check and the summaries read
    }
    flat = {**metrics, **{f"teacher_{k}": v for k, v in result["teacher"].items()}}
    flat["teacher_params"] = teacher.n_params
    for run_id in run_ids:
        tracking.log_metrics(run_id, flat)
    log_overlays(run_ids[0], student, test)
    return metrics


def log_overlays(run_id: str, student, test: ImageSet) -> None:
    """The highest-scoring held-out images with the student's map over them, translucent, with a colour bar, the
    score and the threshold: `overlays/*.png`, 400 px wide."""
    # matplotlib only for the overlays
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend: no display here

    scores = student.score_images(test.images)
    top = np.argsort(-scores)[:OVERLAYS]
    maps = student.maps(test.images[top])
    with tempfile.TemporaryDirectory() as tmp:
        for rank, (index, heat) in enumerate(zip(top, maps)):
            path = Path(tmp) / f"{rank + 1:02d}_{Path(test.paths[index]).stem}.png"
            _overlay(
                plt, test.images[index], heat, Path(test.paths[index]).name, scores[index], student.threshold, path
            )
            tracking.log_file(run_id, path, "overlays")


def _overlay(plt, image: np.ndarray, heat: np.ndarray, name: str, score: float, threshold: float, path: Path):
    image = image.transpose(1, 2, 0).squeeze()
    figure, axis = plt.subplots(figsize=(5, 4.4))
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
    shown = axis.imshow(
        heat, cmap="inferno", alpha=0.4, extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
    )
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04, label="anomaly map")
    verdict = "ANOMALY" if score >= threshold else "normal"
    axis.set_title(f"{name}\nscore {score:.3f}, threshold {threshold:.3f}: {verdict}", fontsize=10)
    axis.axis("off")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


class ImageGateRows:
    """The held-out images as the gate scores them: the champion's pyfunc reads the same files."""

    def __init__(self, test: ImageSet):
        self.test = test
        self.labels = test.labels

    def scoring_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"path": self.test.paths})

    def __len__(self) -> int:
        return len(self.test)


@task(cache_policy=NO_CACHE)
def check_image_files(data_path: str, contract: ImageContract) -> list[str]:
    """The files of a batch scoring, every one checked before any is scored (failing files named)."""
    files = image_files(data_path)
    check_images(files, contract.channels, contract.min_size, duplicates_allowed=True)
    return [str(f) for f in files]


@task(cache_policy=NO_CACHE)
def score_image_files(detector, files: list[str], chunk: int, threshold: float | None) -> tuple[pd.DataFrame, float]:
    """(per image: path, drift features, score, flag; images per second). Memory holds one chunk of images."""
    start, parts = time.perf_counter(), []
    for first in range(0, len(files), chunk):
        paths = files[first : first + chunk]
        parts.append(detector.describe(detector.load(pd.DataFrame({"path": paths})), threshold))
    rows = pd.concat(parts, ignore_index=True)
    rows.insert(0, "path", files)
    return rows, len(files) / (time.perf_counter() - start)
