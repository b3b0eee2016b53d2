"""/score-image: images posted as multipart form files, scored by an image model's student with their anomaly maps.

Every image is checked (readable, channels, minimum size) before any is scored; one bad file is a 422 naming it
and nothing is logged. The live store keeps, per image, its file name, SHA-256, the drift features (channel
statistics and the student's embedding), score and flag — not the image.
"""

import hashlib
import time
import uuid

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from anomaly_distill.contract import check_image_items
from anomaly_distill.errors import DataError
from anomaly_distill.image.image_data import load_images
from anomaly_distill.image.image_pipeline import describe_images
from stores.live_store import ROW_ID
from stores.wal import encode_columns, frame_columns

MAX_IMAGES = 256  # per request


def image_detector(model):
    """The ImageDetector inside a loaded pyfunc, or None for other models."""
    python_model = getattr(model, "unwrap_python_model", lambda: None)()
    detector = getattr(python_model, "detector", None)
    return detector if getattr(detector, "kind", None) == "image" else None


async def read_uploads(headers: Headers, body: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file in a multipart/form-data body."""
    if not headers.get("content-type", "").startswith("multipart/form-data"):
        raise DataError("send the images as multipart/form-data files (curl -F image=@photo.png)")

    async def stream():
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=MAX_IMAGES, max_part_size=len(body) + 1).parse()
    except MultiPartException as error:
        raise DataError(f"the multipart body could not be read: {error.message}") from None
    uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not uploads:
        raise DataError("no image files in the form: send at least one file field")
    return [(upload.filename or f"file {i}", await upload.read()) for i, upload in enumerate(uploads)]


def score_uploads(detector, contract, ref, uploads: list[tuple[str, bytes]], threshold: float | None, maps: bool):
    """(answer, log line) for the uploaded images; a DataError naming every file that breaks the contract."""
    check_image_items(contract, uploads)
    images = load_images([data for _, data in uploads], detector.size, detector.channels)
    inspected = detector.inspect(images)
    cut = detector.threshold if threshold is None else threshold
    rows = describe_images(images, inspected, cut)
    n = len(uploads)
    rows.insert(0, "filename", [name for name, _ in uploads])
    rows.insert(1, "sha256", [hashlib.sha256(data).hexdigest() for _, data in uploads])
    rows = rows.assign(model_name=ref.name, model_version=ref.version)
    rows[ROW_ID] = [uuid.uuid4().hex for _ in range(n)]
    answer = {
        "model_name": ref.name,
        "model_version": ref.version,
        "filenames": rows["filename"].tolist(),
        "scores": inspected.scores.astype(float),
        "is_anomaly": rows["is_anomaly"].to_numpy(),
        "row_ids": rows[ROW_ID].tolist(),
    }
    if maps:
        answer["maps"] = inspected.maps  # (n, size, size): the anomaly map, upsampled to the model's input size
    return answer, encode_columns(frame_columns(rows), time.time_ns())
