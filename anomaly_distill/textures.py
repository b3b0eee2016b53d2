"""A generated textures set with planted defects and their masks (nothing is downloaded; the same seed gives the
same images, byte for byte).

Normal images: a woven-looking texture (two crossed gratings of random phase, slightly varying frequency and
orientation, plus fine grain) in a warm grey. Defects, each with its pixel mask: a scratch (a thin bright or dark
line), a hole (a dark disk with a soft rim), a stain (a faint coloured blob). `write_textures` writes them as
PNG files in the folder layout `train --modality image` reads (good/, scratch/, hole/, stain/, plus masks/).
"""

from pathlib import Path

import numpy as np

DEFECTS = ("scratch", "hole", "stain")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size))
    for base_angle in (0.0, np.pi / 2):
        angle = base_angle + rng.normal(0, 0.03)
        frequency = 16 * (1 + rng.normal(0, 0.02))
        phase = rng.uniform(0, 2 * np.pi)
        image += np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    image = 0.5 + 0.15 * image + rng.normal(0, 0.03, (size, size))
    tint = np.array([1.0, 0.95, 0.85])
    return np.clip(image[..., None] * tint, 0, 1)


def _scratch(rng, size):
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    angle, length = rng.uniform(0, np.pi), rng.uniform(0.25, 0.5) * size
    along = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    across = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    mask = (np.abs(across) < 1.2) & (np.abs(along) < length / 2)
    return mask, rng.choice([-0.45, 0.45]) * np.ones(3)


def _hole(rng, size):
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    radius = rng.uniform(0.04, 0.08) * size
    return (x - cx) ** 2 + (y - cy) ** 2 < radius**2, np.array([-0.4, -0.4, -0.4])


def _stain(rng, size):
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    rx, ry = rng.uniform(0.06, 0.12, 2) * size
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1, np.array([0.25, 0.05, -0.2])


def make_image(seed: int, defect: str | None, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float image in [0, 1] and its (H, W) boolean defect mask (all False for a normal image)."""
    rng = np.random.default_rng(seed)
    image = _texture(rng, size)
    mask = np.zeros((size, size), dtype=bool)
    if defect is not None:
        mask, shift = {"scratch": _scratch, "hole": _hole, "stain": _stain}[defect](rng, size)
        image = np.where(mask[..., None], np.clip(image + shift, 0, 1), image)
    return image, mask


def write_textures(folder: str | Path, normal: int = 200, per_defect: int = 20, size: int = 128, seed: int = 0) -> Path:
    """good/ (normal), one folder per defect, and masks/<defect>/<same name>.png (white = defect)."""
    from PIL import Image

    folder = Path(folder)
    plan = [("good", None, normal)] + [(defect, defect, per_defect) for defect in DEFECTS]
    for offset, (name, defect, count) in enumerate(plan):
        (folder / name).mkdir(parents=True, exist_ok=True)
        if defect:
            (folder / "masks" / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = make_image(seed * 1_000_003 + offset * 100_000 + i, defect, size)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / name / f"{i:04d}.png")
            if defect:
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / name / f"{i:04d}.png")
    return folder
