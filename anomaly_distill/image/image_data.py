"""Image input: a folder (good/ = normal, any other subfolder = a labelled defect, masks/ = optional defect masks)
or a CSV manifest (`path,label`), checked against the image contract before anything trains, then resized.

The contract names every failing file: unreadable, the wrong number of channels, smaller than the minimum size,
or a duplicate of another file (same bytes, by SHA-256).
"""

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg"}
GOOD, MASKS = "good", "masks"
CHANNEL_MODES = {1: "L", 3: "RGB"}
SHOWN_PROBLEMS = 20
MAX_PIXELS = 40_000_000  # larger images are refused (a 40-megapixel photo decodes to 120 MB)


@dataclass
class ImageSet:
    images: np.ndarray  # (n, channels, size, size) float32 in [0, 1]
    labels: np.ndarray | None  # 1 = defect, 0 = normal; None: all of unknown label
    paths: list[str]
    masks: np.ndarray | None = None  # (n, size, size) bool where defect masks are known

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "ImageSet":
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return ImageSet(self.images[index], pick(self.labels), [self.paths[i] for i in index], pick(self.masks))


def list_images(source: str | Path) -> tuple[list[Path], np.ndarray]:
    """Image files and labels of a folder (good/ → 0, other subfolders → 1) or of a CSV manifest."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such folder or file")
    if source.is_file():
        return _manifest(source)
    if not (source / GOOD).is_dir():
        raise DataError(f"{source}: an image folder needs a `{GOOD}/` subfolder of normal images")
    paths, labels = [], []
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and p.name != MASKS):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
        paths += files
        labels += [0 if folder.name == GOOD else 1] * len(files)
    if not paths:
        raise DataError(f"{source}: no PNG or JPEG images found")
    return paths, np.array(labels, dtype=np.int8)


def _manifest(path: Path) -> tuple[list[Path], np.ndarray]:
    frame = pd.read_csv(path)
    if not {"path", "label"} <= set(frame.columns):
        raise DataError(f"{path}: a manifest needs the columns path,label (has {', '.join(frame.columns)})")
    bad = ~frame["label"].isin([0, 1])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: label must be 0 or 1; row {first + 1} has {frame['label'].iloc[first]!r}")
    paths = [p if p.is_absolute() else path.parent / p for p in map(Path, frame["path"])]
    return paths, frame["label"].to_numpy(dtype=np.int8)


def check_image_bytes(data: bytes, channels: int, min_size: int) -> str | None:
    """What is wrong with one encoded image for a model of `channels` and `min_size`, or None."""
    # PIL only to read images: every contract user imports this module (contract.py)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            bands, (width, height) = len(image.getbands()), image.size
            if width * height > MAX_PIXELS:  # checked before decoding: a small file can declare a huge image
                return f"{width}x{height} is over the limit of {MAX_PIXELS:,} pixels"
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable ({type(error).__name__}: {str(error)[:80]})"
    if bands not in (1, 3, 4) or (channels == 1 and bands != 1):
        return f"{bands} channel(s); this model takes {channels}"
    if min(width, height) < min_size:
        return f"{width}x{height} is smaller than the minimum {min_size}x{min_size}"
    return None


def image_feature_columns(channels: int, embedding_dim: int) -> list[str]:
    """What drift monitoring compares for an image model: each channel's mean and spread, and the student's
    embedding (its hidden map averaged over locations)."""
    stats = [f"{kind}_{c}" for c in range(channels) for kind in ("mean", "std")]
    return stats + [f"emb_{i}" for i in range(embedding_dim)]


def image_files(source: str | Path) -> list[Path]:
    """The images a batch scoring reads: every PNG/JPEG under a folder (not masks/), the `path` column of a CSV
    manifest, or one image file."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such folder or file")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES and MASKS not in p.parts)
    elif source.suffix.lower() in SUFFIXES:
        files = [source]
    else:
        frame = pd.read_csv(source)
        if "path" not in frame.columns:
            raise DataError(f"{source}: a manifest needs a column `path` (has {', '.join(frame.columns)})")
        files = [p if p.is_absolute() else source.parent / p for p in map(Path, frame["path"])]
    if not files:
        raise DataError(f"{source}: no PNG or JPEG images found")
    return files


def image_problems(
    items: list[tuple[str, Path | bytes]], channels: int, min_size: int, duplicates_allowed: bool = True
) -> list[str]:
    """ "name: what is wrong" for each (name, file or encoded bytes) item that breaks the image contract; a second
    item with the same bytes (SHA-256) is a problem unless duplicates are allowed."""
    problems, seen = [], {}
    for name, item in items:
        try:
            data = item.read_bytes() if isinstance(item, Path) else item
        except OSError as error:
            problems.append(f"{name}: unreadable ({type(error).__name__})")
            continue
        problem = check_image_bytes(data, channels, min_size)
        if problem:
            problems.append(f"{name}: {problem}")
            continue
        if not duplicates_allowed:
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                problems.append(f"{name}: duplicate of {seen[digest]} (same bytes)")
            seen.setdefault(digest, name)
    return problems


def check_images(paths: list[Path], channels: int, min_size: int, duplicates_allowed: bool = False) -> None:
    """The image contract; a DataError naming every failing file (the first 20, and how many more). Training
    refuses duplicates (they leak between the training and held-out images); scoring may see the same image twice."""
    problems = image_problems([(str(path), path) for path in paths], channels, min_size, duplicates_allowed)
    if problems:
        more = f"\n  … and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise DataError(f"{len(problems)} image problem(s):\n  " + "\n  ".join(problems[:SHOWN_PROBLEMS]) + more)


def decode(data: bytes | str | Path, size: int, channels: int) -> np.ndarray:
    """One image (file path or encoded bytes) as (channels, size, size) float32 in [0, 1]."""
    # PIL only to read images: every contract user imports this module (contract.py)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            resized = image.convert(CHANNEL_MODES[channels]).resize((size, size), Image.BILINEAR)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        name = "image bytes" if isinstance(data, bytes) else str(data)
        raise DataError(f"{name}: unreadable ({type(error).__name__})") from error
    array = np.asarray(resized, dtype=np.float32) / 255
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_images(items: list, size: int, channels: int) -> np.ndarray:
    if not items:
        return np.zeros((0, channels, size, size), dtype=np.float32)
    return np.stack([decode(item, size, channels) for item in items])


def _masks(paths: list[Path], root: Path, size: int) -> np.ndarray | None:
    """masks/<class>/<name> beside each defect image, all-False for normal ones; None when a defect has none."""
    # PIL only to read or write images: every contract user imports this module (contract.py)
    from PIL import Image

    masks = np.zeros((len(paths), size, size), dtype=bool)
    for i, path in enumerate(paths):
        if path.parent.name == GOOD:
            continue
        mask = root / MASKS / path.parent.name / path.name
        if not mask.exists():
            return None
        with Image.open(mask) as image:
            masks[i] = np.asarray(image.convert("L").resize((size, size), Image.NEAREST)) > 127
    return masks


def load_image_set(source: str | Path, size: int, channels: int, min_size: int) -> ImageSet:
    paths, labels = list_images(source)
    check_images(paths, channels, min_size)
    masks = _masks(paths, Path(source), size) if Path(source).is_dir() else None
    return ImageSet(load_images(paths, size, channels), labels, [str(p) for p in paths], masks)


def digits_set(normal_digit: int = 0, size: int = 32) -> ImageSet:
    """scikit-learn's bundled 8×8 digits (1,797 real scans): one digit is normal, the other nine anomalies."""
    # torch and scikit-learn's datasets only to make the digits set: contract.py imports this module
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.as_tensor(digits.images[:, None] / 16, dtype=torch.float32)
    images = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    labels = (digits.target != normal_digit).astype(np.int8)
    return ImageSet(images.clamp(0, 1).numpy(), labels, [f"digits[{i}]" for i in range(len(labels))])


def write_digits(folder: str | Path, normal_digit: int, others: int = 20, size: int = 32, seed: int = 0) -> Path:
    """A folder a new user might make from scikit-learn's digits: every scan of `normal_digit` in good/ and
    `others` scans of the other digits (drawn at random) in other/, as size × size grey PNGs."""
    # PIL only to read or write images: every contract user imports this module (contract.py)
    from PIL import Image

    data = digits_set(normal_digit, size)
    normal = np.flatnonzero(data.labels == 0)
    other = np.random.default_rng(seed).choice(np.flatnonzero(data.labels == 1), others, replace=False)
    for name, index in ((GOOD, normal), ("other", np.sort(other))):
        (Path(folder) / name).mkdir(parents=True, exist_ok=True)
        for i in index:
            pixels = (data.images[i, 0] * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(Path(folder) / name / f"{i:04d}.png")
    return Path(folder)
