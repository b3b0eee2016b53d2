"""Generated texture sets with planted defects and their masks (nothing is downloaded; the same seed gives the
same images, byte for byte). Two families:

- `woven`: a woven-looking texture (two crossed gratings of random phase, slightly varying frequency and
  orientation, plus fine grain) in a warm grey. Defects: a scratch (a thin bright or dark line), a hole (a dark
  disk), a stain (a faint coloured blob). Each changes brightness or colour, so a model-free statistic finds it.
- `fabric`: the same weave with a per-image brightness and contrast of its own. Its defects change neither colour
  nor local brightness, and none is of a kind the student's synthetic damage makes (no pasted patch, no line, no
  shifted blob): `blur` (a disk of the weave blurred out), `thinning` (an ellipse where the horizontal threads
  are thinner) and `misweave` (a patch where the weave runs at another angle). Colour ratios and 4×4 local
  means stay those of normal images (benchmarks/images.py checks it).

`write_textures` writes them as PNG files in the folder layout `train --modality image` reads (good/, one folder
per defect kind, plus masks/).
"""

from pathlib import Path

import numpy as np

FAMILIES = {"woven": ("scratch", "hole", "stain"), "fabric": ("blur", "thinning", "misweave")}
DEFECTS = FAMILIES["woven"]
TINT = np.array([1.0, 0.95, 0.85])


def _gratings(rng: np.random.Generator, size: int) -> list[tuple[float, float, float]]:
    """(angle, frequency, phase) of the two crossed gratings: the vertical and the horizontal threads."""
    plan = []
    for base_angle in (0.0, np.pi / 2):
        angle = base_angle + rng.normal(0, 0.03)
        frequency = 16 * (1 + rng.normal(0, 0.02))
        plan.append((angle, frequency, rng.uniform(0, 2 * np.pi)))
    return plan


def _grating(size: int, angle: float, frequency: float, phase: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    return np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    image = sum(_grating(size, *plan) for plan in _gratings(rng, size))
    image = 0.5 + 0.15 * image + rng.normal(0, 0.03, (size, size))
    return np.clip(image[..., None] * TINT, 0, 1)


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


def _ellipse(rng, size, low, high):
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    rx, ry = rng.uniform(low, high, 2) * size
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1


def _blurred(grey: np.ndarray, sigma: float) -> np.ndarray:
    # scipy.ndimage only to generate textures
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(grey, sigma, mode="reflect")


def _fabric(rng: np.random.Generator, defect: str | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    vertical, horizontal = _gratings(rng, size)
    threads = [_grating(size, *vertical), _grating(size, *horizontal)]
    grain = rng.normal(0, 0.03, (size, size))
    brightness, contrast = 0.5 + rng.normal(0, 0.04), 0.15 * rng.uniform(0.75, 1.25)
    mask = np.zeros((size, size), dtype=bool)
    if defect == "thinning":
        mask = _ellipse(rng, size, 0.08, 0.16)
        threads[1] = np.where(mask, threads[1] * rng.uniform(0.2, 0.5), threads[1])
    elif defect == "misweave":
        mask = _ellipse(rng, size, 0.08, 0.16)
        turn = rng.uniform(np.pi / 8, np.pi / 4) * rng.choice([-1, 1])
        turned = [_grating(size, a + turn, f, p) for a, f, p in (vertical, horizontal)]
        threads = [np.where(mask, t, original) for t, original in zip(turned, threads)]
    grey = brightness + contrast * sum(threads) + grain
    if defect == "blur":
        mask = _ellipse(rng, size, 0.07, 0.14)
        grey = np.where(mask, _blurred(grey, size / 128), grey)
    return np.clip(grey[..., None] * TINT, 0, 1), mask


def make_image(seed: int, defect: str | None, size: int = 128, family: str = "woven") -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float image in [0, 1] and its (H, W) boolean defect mask (all False for a normal image)."""
    rng = np.random.default_rng(seed)
    if family == "fabric":
        return _fabric(rng, defect, size)
    image = _texture(rng, size)
    mask = np.zeros((size, size), dtype=bool)
    if defect is not None:
        mask, shift = {"scratch": _scratch, "hole": _hole, "stain": _stain}[defect](rng, size)
        image = np.where(mask[..., None], np.clip(image + shift, 0, 1), image)
    return image, mask


def write_textures(
    folder: str | Path, normal: int = 200, per_defect: int = 20, size: int = 128, seed: int = 0, family: str = "woven"
) -> Path:
    """good/ (normal), one folder per defect, and masks/<defect>/<same name>.png (white = defect)."""
    # PIL only to write them as files
    from PIL import Image

    folder = Path(folder)
    plan = [("good", None, normal)] + [(defect, defect, per_defect) for defect in FAMILIES[family]]
    for offset, (name, defect, count) in enumerate(plan):
        (folder / name).mkdir(parents=True, exist_ok=True)
        if defect:
            (folder / "masks" / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = make_image(seed * 1_000_003 + offset * 100_000 + i, defect, size, family)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / name / f"{i:04d}.png")
            if defect:
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / name / f"{i:04d}.png")
    return folder
