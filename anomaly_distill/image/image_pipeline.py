"""Images: teacher → synthetic defects → distilled student map → evaluation, and the shippable image detector.

The student must score on its own (the point is a model ≥ 20× faster than its teacher on a small device), so it
does not compare itself with the teacher at scoring time: it learns to output the teacher's anomaly map — the
soft term, per location, on the teacher's log-map standardised by normal training images — and, during training
only, to predict the teacher's features from its hidden maps (the hint term). Trained on normal images only, as
the teacher: to show it what a high map looks like, each normal training image also enters the distillation set
with synthetic defects (a pasted patch from elsewhere, a line, a blob), smoothly deformed (elastic copies), with
its quarters rearranged (rearranged copies) and turned or mirrored whole (turned copies), mapped by the teacher
like any image.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from anomaly_distill.config import ImageConfig
from anomaly_distill.errors import DataError
from anomaly_distill.image.image_data import ImageSet, image_feature_columns, load_images
from anomaly_distill.image.image_export import export_image_graph
from anomaly_distill.models.images import (
    AutoencoderTeacher,
    BackboneTeacher,
    ImageStandardiser,
    ImageStudentNet,
    image_score,
    load_backbone,
    params,
)

HINT_DIM = 64
IMAGE_COLUMNS = ("path", "image")  # a frame to score has one of them: file paths, or encoded bytes


@dataclass
class ImageTeacher:
    teacher: object  # BackboneTeacher | AutoencoderTeacher
    kind: str
    center: float  # median of the log-map over normal training locations
    scale: float  # and its standard deviation: the student's target units
    threshold: float
    cross: object | None = None  # backbone: the same network with a bank of the other half of the training images
    in_bank: np.ndarray | None = None  # backbone: which training images `teacher`'s bank holds
    standardiser: ImageStandardiser = field(default_factory=ImageStandardiser)  # the student takes it over

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher.features(self.standardiser(images))

    def target_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self._standardised(self.teacher.maps(self.standardiser(images)))

    def _standardised(self, maps: torch.Tensor) -> torch.Tensor:
        return (torch.log(maps + 1e-8) - self.center) / self.scale

    def training_maps(self, images: torch.Tensor, sources: np.ndarray) -> torch.Tensor:
        """Maps of training images and of copies made from them (`sources[i]`: the training image image i comes
        from), each measured against the bank that does not hold its source: in its own bank an image's
        locations match themselves at distance ~0 (log-map −18 where normal images sit near 0), and the student
        would be taught which images happen to be in the bank rather than what is anomalous."""
        maps = self.target_maps(images)
        if self.cross is not None:
            own = torch.from_numpy(np.flatnonzero(self.in_bank[sources]))
            if len(own):
                maps[own] = self._standardised(self.cross.maps(self.standardiser(images[own])))
        return maps

    @property
    def n_params(self) -> int:
        return self.teacher.n_params


@dataclass
class EnsembleTeacher:
    """The autoencoder and the backbone together: the mean of their standardised maps (each in its own units of
    normal variation, so neither dominates), and both their features as hint targets."""

    members: list[ImageTeacher]
    threshold: float = 0.0
    kind = "ensemble"

    def target_maps(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member.target_maps(images) for member in self.members]).mean(dim=0)

    def training_maps(self, images: torch.Tensor, sources: np.ndarray) -> torch.Tensor:
        return torch.stack([member.training_maps(images, sources) for member in self.members]).mean(dim=0)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.features(images) for member in self.members], dim=1)

    @property
    def standardiser(self) -> ImageStandardiser:
        return self.members[0].standardiser

    @property
    def n_params(self) -> int:
        return sum(member.n_params for member in self.members)


AnyImageTeacher = ImageTeacher | EnsembleTeacher


def split_images(data: ImageSet, config: ImageConfig) -> tuple[ImageSet, ImageSet]:
    """Normal images: a random share trains; the rest and every labelled defect image are held out."""
    normal = np.flatnonzero(data.labels == 0) if data.labels is not None else np.arange(len(data))
    rng = np.random.default_rng(config.seed)
    held = rng.permutation(normal)[: int(round(len(normal) * config.test_fraction))]
    test = np.union1d(held, np.flatnonzero(data.labels == 1)) if data.labels is not None else np.sort(held)
    train = np.setdiff1d(normal, held)
    if len(train) < 10:
        raise DataError(f"only {len(train)} normal training images; at least 10 are needed")
    return data.subset(train), data.subset(test)


TEACHER_KINDS = ("autoencoder", "backbone", "ensemble")
# `teacher: auto` is the backbone. The rule was chosen leave-one-class-out on the digits among always-autoencoder,
# always-backbone, always-ensemble and "the candidate with the best label-free signal" (`choice_signals`: two
# signals and their mean): on 9 of the 10 folds the rule with the best teacher AUROC on the other nine digits was
# always-backbone; the signals picked the autoencoder where it was worst (benchmarks/images.py, BENCHMARKS.md
# "Images that hold"). The textures were not consulted.
AUTO_TEACHER = "backbone"
CHOICE_HOLDOUT = 0.2


def fit_teacher(kind: str, images: torch.Tensor, config: ImageConfig) -> AnyImageTeacher:
    """One teacher of `kind` on normal images, standardised and thresholded on them."""
    if kind == "ensemble":
        members = [fit_teacher(member, images, config) for member in ("autoencoder", "backbone")]
        return with_threshold(EnsembleTeacher(members), images, config)
    cross = in_bank = None
    standardiser = ImageStandardiser.fitted(images) if config.standardise_images else ImageStandardiser()
    raw, images = images, standardiser(images)
    if kind == "backbone":
        teacher = BackboneTeacher(load_backbone(config.weights, config.seed), config.bank_size, config.seed)
        # The bank from half the images; the other half sets the scale, so normal maps are not all ~0, and has
        # a bank of its own for the first half's distillation targets (`training_maps`).
        in_bank = np.arange(len(images)) % 2 == 0
        fit, calibrate = images[in_bank], images[~in_bank]
        cross = BackboneTeacher(teacher.backbone, config.bank_size, config.seed).fit(calibrate)
    else:
        teacher = AutoencoderTeacher(images.shape[1], config.teacher_epochs, seed=config.seed)
        fit = calibrate = images
    teacher.fit(fit)
    log_maps = torch.log(teacher.maps(calibrate) + 1e-8)
    center, scale = float(log_maps.median()), float(log_maps.std()) + 1e-6
    return with_threshold(ImageTeacher(teacher, kind, center, scale, 0.0, cross, in_bank, standardiser), raw, config)


def with_threshold(teacher: AnyImageTeacher, images: torch.Tensor, config: ImageConfig) -> AnyImageTeacher:
    """The teacher with its threshold: the (1 − contamination) quantile of its training images' scores."""
    scores = image_score(teacher.training_maps(images, np.arange(len(images))), config.reduction).numpy()
    teacher.threshold = float(np.quantile(scores, 1 - config.contamination))
    return teacher


def choice_signals(images: torch.Tensor, config: ImageConfig) -> dict[str, dict[str, float]]:
    """Label-free evidence per candidate teacher, the benchmark's candidate rules for `auto` (which lost to
    always-backbone, so `auto` does not compute them): each is fitted on four fifths of the normal training images;
    the held-out fifth and damaged copies of it (`synthetic`: pasted patch, line, blob; `elastic`: deformed) are
    scored, and the signal is how well the teacher ranks the copies above the originals (AUROC). No labelled
    image is read."""
    # scikit-learn's metrics (~1 s) only to evaluate: a loaded image model scores without them
    from sklearn.metrics import roc_auc_score

    order = np.random.default_rng(config.seed + 17).permutation(len(images))
    n_held = max(2, int(round(len(images) * CHOICE_HOLDOUT)))
    held, fit = images[np.sort(order[:n_held])], images[np.sort(order[n_held:])]
    damaged = {
        "synthetic": synthetic_defects(held, 1, config.seed + 17),
        "elastic": elastic_copies(held, 1, config.seed + 17),
    }
    members = {kind: fit_teacher(kind, fit, config) for kind in ("autoencoder", "backbone")}
    members["ensemble"] = EnsembleTeacher(list(members.values()))
    signals = {}
    for kind, teacher in members.items():
        normal = image_score(teacher.target_maps(held), config.reduction).numpy()
        signals[kind] = {}
        for name, copies in damaged.items():
            scores = image_score(teacher.target_maps(copies), config.reduction).numpy()
            truth = np.r_[np.zeros(len(normal)), np.ones(len(scores))]
            signals[kind][name] = float(roc_auc_score(truth, np.r_[normal, scores]))
    return signals


def chosen_kind(signals: dict[str, dict[str, float]], signal: str) -> str:
    """The candidate with the highest signal; ties go to the cheaper teacher (the order of TEACHER_KINDS)."""
    return max(TEACHER_KINDS, key=lambda kind: (signals[kind][signal], -TEACHER_KINDS.index(kind)))


def train_image_teacher(train: ImageSet, config: ImageConfig) -> AnyImageTeacher:
    kind = AUTO_TEACHER if config.teacher == "auto" else config.teacher
    return fit_teacher(kind, torch.from_numpy(train.images), config)


def synthetic_defects(images: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """`copies` damaged versions of each image: a patch pasted from another place, a line, or a blob."""
    generator = np.random.default_rng(seed)
    n, c, h, w = images.shape
    out = []
    for _ in range(copies):
        damaged = images.clone()
        for i in range(n):
            kind = generator.integers(3)
            if kind == 0:
                ph, pw = generator.integers(h // 8, h // 3, 2)
                y0, y1 = generator.integers(0, h - ph, 2)
                x0, x1 = generator.integers(0, w - pw, 2)
                source = images[generator.integers(n)]
                patch = source[:, y0 : y0 + ph, x0 : x0 + pw]
                damaged[i, :, y1 : y1 + ph, x1 : x1 + pw] = patch.flip(-1) * generator.uniform(0.6, 1.4)
            else:
                yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                cy, cx = generator.uniform(0.15, 0.85, 2) * (h, w)
                if kind == 1:
                    angle, half = generator.uniform(0, np.pi), generator.uniform(0.1, 0.3) * h
                    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
                    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
                    mask = (across.abs() < max(1.0, h / 100)) & (along.abs() < half)
                else:
                    ry, rx = generator.uniform(0.04, 0.12, 2) * (h, w)
                    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
                shift = torch.as_tensor(generator.uniform(-0.5, 0.5, c), dtype=torch.float32).view(c, 1, 1)
                damaged[i] = torch.where(mask, (damaged[i] + shift).clamp(0, 1), damaged[i])
        out.append(damaged)
    return torch.cat(out) if out else images[:0]


def elastic_copies(images: torch.Tensor, copies: int, seed: int, magnitude: float = 0.15) -> torch.Tensor:
    """`copies` smoothly deformed versions of each image (a random displacement field on a 4×4 grid, bicubically
    upsampled; `magnitude` in units of half the image). The teacher maps them like any image: they teach the
    student how the teacher answers a changed shape, which a pasted patch or a line does not."""
    generator = torch.Generator().manual_seed(seed + 1)
    n, _, h, w = images.shape
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(images.shape), align_corners=False)
    out = []
    for _ in range(copies):
        noise = torch.randn(n, 2, 4, 4, generator=generator) * magnitude
        field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        out.append(F.grid_sample(images, identity + field, padding_mode="border", align_corners=False))
    return torch.cat(out) if out else images[:0]


def rearranged_copies(images: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """`copies` rearranged versions of each image: each quarter, with probability ½ (at least one), replaced by a
    quarter of a random training image, turned or mirrored at random. Normal parts in places and orientations the
    normal images never hold: the teacher maps them like any image, and they show the student a changed layout of
    normal parts (another digit, a part upside down), which neither a pasted patch, a line nor a smooth bend does."""
    generator = np.random.default_rng(seed + 2)
    n, _, h, w = images.shape
    hh, hw = h // 2, w // 2
    corners = [(0, 0), (0, hw), (hh, 0), (hh, hw)]
    out = []
    for _ in range(copies):
        moved = images.clone()
        for i in range(n):
            replaced = generator.random(4) < 0.5
            replaced[generator.integers(4)] = True
            for y, x in np.asarray(corners)[replaced]:
                sy, sx = corners[generator.integers(4)]
                quarter = images[generator.integers(n), :, sy : sy + hh, sx : sx + hw]
                quarter = quarter.rot90(int(generator.integers(4)), dims=(1, 2)) if hh == hw else quarter
                moved[i, :, y : y + hh, x : x + hw] = quarter.flip(-1) if generator.random() < 0.5 else quarter
        out.append(moved)
    return torch.cat(out) if out else images[:0]


def turned_copies(images: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """`copies` turned versions of each image: one of its seven other orientations (turned by 90°, 180° or 270°,
    mirrored or not, or only mirrored), at random. A whole normal image the normal images never show that way (a 6
    upside down reads as a 9): the teacher maps it like any image, and the student sees how the teacher answers a
    whole unfamiliar shape, where the rearranged copies change only quarters."""
    generator = np.random.default_rng(seed + 3)
    out = []
    for _ in range(copies):
        turns = generator.integers(1, 8, len(images))  # 0 would be the image as it is
        out.append(torch.stack([_oriented(image, int(turn)) for image, turn in zip(images, turns)]))
    return torch.cat(out) if out else images[:0]


def _oriented(image: torch.Tensor, turn: int) -> torch.Tensor:
    """One of an image's eight orientations: turned by 90° × (turn mod 4), mirrored when turn ≥ 4."""
    turned = image.rot90(turn % 4, dims=(1, 2))
    return turned.flip(-1) if turn >= 4 else turned


@dataclass
class Inspected:
    scores: np.ndarray  # (n,)
    maps: np.ndarray  # (n, size, size)
    embeddings: np.ndarray  # (n, embedding_dim)


def describe_images(images: np.ndarray, inspected: Inspected, threshold: float) -> pd.DataFrame:
    columns = image_feature_columns(images.shape[1], inspected.embeddings.shape[1])
    stats = np.stack([images.mean(axis=(2, 3)), images.std(axis=(2, 3))], axis=2).reshape(len(images), -1)
    frame = pd.DataFrame(np.hstack([stats, inspected.embeddings]).astype(np.float64), columns=columns)
    return frame.assign(score=inspected.scores.astype(np.float64), is_anomaly=inspected.scores > threshold)


# Images per forward pass when scoring: on one thread 256 scores ~1.25× as many images/s as 64 (the student's small
# convolutions pay a fixed cost per call), and at 128 px in colour a chunk's largest activation is still ~70 MB.
SCORE_CHUNK = 256


@dataclass
class ImageDetector:
    """The shippable image detector: the student network, its input size and channels, and its threshold."""

    net: ImageStudentNet
    size: int
    channels: int
    threshold: float
    reduction: str = "topk_mean"
    history: list[dict] = field(default_factory=list)
    kind = "image"
    contract_kind = "image"
    explains = False
    onnx_name = "detector.onnx"

    @property
    def n_params(self) -> int:
        return params(self.net)

    def score_rows(self, images: np.ndarray) -> np.ndarray:
        return self.score_images(images)

    @torch.inference_mode()
    def score_images(self, images: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(images, dtype=np.float32))
        return torch.cat([image_score(self.net(c), self.reduction) for c in tensor.split(SCORE_CHUNK)]).numpy()

    @torch.inference_mode()
    def maps(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size) anomaly maps, upsampled to the (resized) image."""
        small = self.net(torch.as_tensor(np.asarray(images, dtype=np.float32)))
        return F.interpolate(small.unsqueeze(1), size=(self.size, self.size), mode="bilinear").squeeze(1).numpy()

    @property
    def embedding_dim(self) -> int:
        return self.net.head.in_channels

    @torch.inference_mode()
    def inspect(self, images: np.ndarray) -> "Inspected":
        """Scores, maps and embeddings from one forward pass (what the service answers and logs)."""
        scores, maps, embeddings = [], [], []
        for chunk in torch.as_tensor(np.asarray(images, dtype=np.float32)).split(SCORE_CHUNK):
            hidden, small = self.net.hidden_and_map(chunk)
            scores.append(image_score(small, self.reduction))
            maps.append(F.interpolate(small.unsqueeze(1), size=(self.size, self.size), mode="bilinear").squeeze(1))
            embeddings.append(hidden.mean(dim=(2, 3)))
        return Inspected(*(torch.cat(parts).numpy() for parts in (scores, maps, embeddings)))

    def describe(self, images: np.ndarray, threshold: float | None = None) -> pd.DataFrame:
        """Per image: the drift features (channel statistics, embedding), score and flag."""
        inspected = self.inspect(images)
        return describe_images(images, inspected, self.threshold if threshold is None else threshold)

    def load(self, frame: pd.DataFrame) -> np.ndarray:
        column = next((c for c in IMAGE_COLUMNS if c in frame.columns), None)
        if column is None:
            raise DataError(f"image input needs a column `path` (file paths) or `image` (bytes); got {list(frame)}")
        return load_images(list(frame[column]), self.size, self.channels)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score_images(self.load(frame))

    def predict(self, frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
        scores = self.score(frame)
        cut = self.threshold if threshold is None else threshold
        return pd.DataFrame({"score": scores, "is_anomaly": scores > cut})

    def state(self) -> dict:
        return {
            "state_dict": self.net.state_dict(),
            "size": self.size,
            "channels": self.channels,
            "widths": [self.net.body[0].out_channels, self.net.head.in_channels],
            "threshold": self.threshold,
            "reduction": self.reduction,
            "student_map": self.net.student_map,
        }

    @classmethod
    def from_state(cls, saved: dict) -> "ImageDetector":
        # a student saved before `standardise_images` or `student_map` has neither: both off
        student_map = saved.get("student_map", "distilled")
        net = ImageStudentNet(saved["channels"], tuple(saved["widths"]), size=saved["size"], student_map=student_map)
        off = {k: v for k, v in net.state_dict().items() if k.startswith(("standardiser.", "density."))}
        net.load_state_dict(off | saved["state_dict"])
        return cls(net.eval(), saved["size"], saved["channels"], saved["threshold"], saved["reduction"])

    def export_onnx(self, path: str | Path) -> Path:
        return export_image_graph(self, path)


def distill_image_student(teacher: AnyImageTeacher, train: ImageSet, config: ImageConfig) -> ImageDetector:
    torch.manual_seed(config.seed)
    normal = torch.from_numpy(train.images)
    images = torch.cat(
        [
            normal,
            synthetic_defects(normal, config.synthetic_per_image, config.seed),
            elastic_copies(normal, config.elastic_per_image, config.seed),
            rearranged_copies(normal, config.rearranged_per_image, config.seed),
            turned_copies(normal, config.turned_per_image, config.seed),
        ]
    )
    targets = teacher.training_maps(images, np.tile(np.arange(len(normal)), len(images) // len(normal)))
    hints = _hint_targets(teacher, images, config.seed)
    net = ImageStudentNet(
        images.shape[1], tuple(config.student_widths), copy.deepcopy(teacher.standardiser), images.shape[-1]
    )
    projection = torch.nn.Conv2d(config.student_widths[1], HINT_DIM, 1)
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(images), generator=generator)
    n_val = max(1, len(images) // 10)
    val, fit = order[:n_val], order[n_val:]
    optimizer = torch.optim.Adam([*net.parameters(), *projection.parameters()], lr=config.lr)
    history, best, best_state = [], float("inf"), None

    def losses(index):
        hidden, maps = net.hidden_and_distilled(images[index])
        soft = F.mse_loss(maps, targets[index])
        hint = F.mse_loss(projection(hidden), hints[index])
        return soft, hint

    for epoch in range(config.epochs):
        net.train()
        for batch in fit[torch.randperm(len(fit), generator=generator)].split(config.batch_size):
            optimizer.zero_grad()
            soft, hint = losses(batch)
            (soft + config.hint_weight * hint).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            soft, hint = losses(val)
        history.append({"epoch": epoch, "val_soft": float(soft), "val_hint": float(hint)})
        if float(soft) < best:
            best, best_state = float(soft), {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net = with_density(net.eval(), normal, config.student_map)
    detector = ImageDetector(net, train.images.shape[-1], train.images.shape[1], 0.0, config.reduction, history)
    detector.threshold = float(np.quantile(detector.score_images(train.images), 1 - config.contamination))
    return detector


@torch.no_grad()
def with_density(net: ImageStudentNet, normal: torch.Tensor, student_map: str) -> ImageStudentNet:
    """The trained student with its feature density fitted on the normal training images (not on the copies:
    they are what a normal image is not) and its map chosen."""
    net.density.fit(torch.cat([net.hidden_and_distilled(chunk)[0] for chunk in normal.split(128)]))
    net.student_map = student_map
    return net


def _hint_targets(teacher: AnyImageTeacher, images: torch.Tensor, seed: int) -> torch.Tensor:
    """The teacher's features, projected to HINT_DIM channels at random (fixed seed) and standardised."""
    features = torch.cat([teacher.features(chunk) for chunk in images.split(32)])
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(HINT_DIM, features.shape[1], generator=generator) / features.shape[1] ** 0.5
    projected = torch.einsum("kd,ndhw->nkhw", projection, features)
    mean, std = projected.mean(dim=(0, 2, 3), keepdim=True), projected.std(dim=(0, 2, 3), keepdim=True) + 1e-6
    return (projected - mean) / std


def evaluate_images(teacher: AnyImageTeacher, student: ImageDetector, test: ImageSet, config: ImageConfig) -> dict:
    """Image AUROC of both (with labels of both classes) and pixel AUROC of both maps (where masks are known)."""
    # scikit-learn's metrics (~1 s) only to evaluate: a loaded image model scores without them
    from sklearn.metrics import roc_auc_score

    images = torch.from_numpy(test.images)
    teacher_maps = teacher.target_maps(images)
    result = {"teacher": {}, "student": {}}
    scores = {
        "teacher": image_score(teacher_maps, config.reduction).numpy(),
        "student": student.score_images(test.images),
    }
    if test.labels is not None and len(set(test.labels.tolist())) == 2:
        for who, values in scores.items():
            result[who]["auroc"] = float(roc_auc_score(test.labels, values))
    result["student"]["fidelity"] = float(pd.Series(scores["teacher"]).corr(pd.Series(scores["student"]), "spearman"))
    if test.masks is not None and test.masks.any():
        full = F.interpolate(teacher_maps.unsqueeze(1), size=test.masks.shape[-2:], mode="bilinear").squeeze(1)
        truth = test.masks.ravel()
        result["teacher"]["pixel_auroc"] = float(roc_auc_score(truth, full.numpy().ravel()))
        result["student"]["pixel_auroc"] = float(roc_auc_score(truth, student.maps(test.images).ravel()))
    return result
