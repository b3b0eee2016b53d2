"""Image teachers and the image student: pure torch.

- `ResNet18`: the torchvision ResNet-18 layout with the same parameter names, so a torchvision weights file
  (`torch.save(resnet18(...).state_dict(), PATH)`) loads into it without torchvision installed. (torchvision's
  wheels on this machine are CUDA builds that do not import beside the CPU torch this project pins.)
- `BackboneTeacher`: the frozen backbone's layer1–3 maps, pooled over 3×3 neighbourhoods and brought to 1/4 of the
  image, are each location's embedding; a location's anomaly is its distance to the nearest embedding of a normal
  training image (a memory bank of sampled locations, PatchCore-style).
- `AutoencoderTeacher`: a convolutional autoencoder trained on the normal images; the anomaly of a location is
  its reconstruction error, averaged to 1/4 of the image; its encoder maps are the hint features.
- `ImageStudentNet`: four small convolutions to a one-channel map at 1/4 of the image (the teacher's map,
  standardised), plus the hidden maps the hint term projects onto the teacher's features during training;
  `FeatureDensity` reads those hidden maps after training as a map of its own (how far each location lies from the
  normal training images' there).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAP_STRIDE = 4  # every map (teacher and student) is at 1/4 of the image size


class BasicBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.downsample = None
        if stride != 1 or n_in != n_out:
            self.downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (n_in, n_out, stride) in enumerate(widths, start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(n_in, n_out, stride), BasicBlock(n_out, n_out, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 1000)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """layer1–3 outputs (strides 4, 8, 16): the multi-scale knowledge; layer4 and fc are never run."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3):
            x = layer(x)
            maps.append(x)
        return maps


def load_backbone(weights: str | None, seed: int) -> ResNet18:
    """A ResNet-18 from a torchvision-layout weights file (or, without one, seeded random weights), frozen."""
    torch.manual_seed(seed)
    backbone = ResNet18()
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        backbone.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return backbone.eval().requires_grad_(False)


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class BackboneTeacher:
    """Frozen backbone features + nearest-neighbour distance to normal locations."""

    def __init__(self, backbone: ResNet18, bank_size: int = 20_000, seed: int = 0):
        self.backbone, self.bank_size, self.seed = backbone, bank_size, seed
        self.bank: torch.Tensor | None = None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for name, p in self.backbone.named_parameters() if not name.startswith(("layer4", "fc")))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 448, h/4, w/4) embeddings."""
        x = (_as_rgb(images) - IMAGENET_MEAN) / IMAGENET_STD
        maps = self.backbone.feature_maps(x)
        size = maps[0].shape[-2:]
        pooled = [F.avg_pool2d(m, 3, 1, 1) for m in maps]
        return torch.cat([pooled[0]] + [F.interpolate(m, size=size, mode="bilinear") for m in pooled[1:]], dim=1)

    def fit(self, images: torch.Tensor) -> "BackboneTeacher":
        embeddings = torch.cat([self.features(chunk) for chunk in images.split(32)])
        flat = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
        generator = torch.Generator().manual_seed(self.seed)
        pick = torch.randperm(len(flat), generator=generator)[: self.bank_size]
        self.bank = flat[pick].contiguous()
        return self

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """(n, h/4, w/4) distance of each location to its nearest normal location."""
        out = []
        for chunk in images.split(16):
            embeddings = self.features(chunk)
            n, d, h, w = embeddings.shape
            flat = embeddings.permute(0, 2, 3, 1).reshape(-1, d)
            nearest = torch.cat([torch.cdist(part, self.bank).min(dim=1).values for part in flat.split(4096)])
            out.append(nearest.reshape(n, h, w))
        return torch.cat(out)


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: int, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        encoder, n_in = [], channels
        for width in widths:
            encoder += [nn.Conv2d(n_in, width, 4, 2, 1), nn.ReLU()]
            n_in = width
        decoder = []
        for width in [*reversed(widths[:-1]), channels]:
            decoder += [nn.ConvTranspose2d(n_in, width, 4, 2, 1), nn.ReLU()]
            n_in = width
        decoder[-1] = nn.Sigmoid()
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class AutoencoderTeacher:
    def __init__(self, channels: int, epochs: int = 30, lr: float = 1e-3, seed: int = 0):
        torch.manual_seed(seed)
        self.model, self.epochs, self.lr, self.seed = ConvAutoencoder(channels), epochs, lr, seed

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def fit(self, images: torch.Tensor) -> "AutoencoderTeacher":
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        self.model.train()
        for _ in range(self.epochs):
            for batch in torch.randperm(len(images), generator=generator).split(32):
                optimizer.zero_grad()
                F.mse_loss(self.model(images[batch]), images[batch]).backward()
                optimizer.step()
        self.model.eval()
        return self

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The first encoder map, brought to 1/4 of the image (the hint target)."""
        first = self.model.encoder[:2](images)
        return F.avg_pool2d(first, 2)

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        error = torch.cat([((self.model(chunk) - chunk) ** 2).mean(1, keepdim=True) for chunk in images.split(32)])
        return F.avg_pool2d(error, MAP_STRIDE).squeeze(1)


class ImageStandardiser(nn.Module):
    """Each image brought to the typical brightness and contrast of the normal training images (their median
    per-image mean and standard deviation), clipped to [0, 1]; off (the identity) while `contrast` is 0. A model
    of normal images then need not span every lighting and contrast of the line: what is left is structure (a
    blurred or thinned patch is low contrast against the image's own, not against every other image's)."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0):
        super().__init__()
        self.register_buffer("brightness", torch.tensor(float(brightness)))
        self.register_buffer("contrast", torch.tensor(float(contrast)))

    @classmethod
    def fitted(cls, images: torch.Tensor) -> "ImageStandardiser":
        flat = images.flatten(1)
        return cls(float(flat.mean(dim=1).median()), float(flat.std(dim=1).median()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if float(self.contrast) == 0:
            return images
        flat = images.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1).view(-1, 1, 1, 1) + 1e-6
        return ((images - mean) / std * self.contrast + self.brightness).clamp(0, 1)


class FeatureDensity(nn.Module):
    """How far each location's hidden features lie from the normal training images' at that location: the
    Mahalanobis distance to their mean there (covariance pooled over locations, shrunk towards its mean variance),
    as a log-distance in units of its spread over normal training locations, as the teacher's map is. It needs no
    anomaly to learn from: a location unlike every normal one is far, whatever made it so. Off until fitted."""

    def __init__(self, width: int, side: int):
        super().__init__()
        # the precision as a whitening 1×1 convolution (its Cholesky factor) and the mean whitened: a convolution and
        # a sum of squares cost the small student a fraction of what a Mahalanobis product per location would
        self.register_buffer("whitener", torch.zeros(width, width, 1, 1))
        self.register_buffer("whitened_mean", torch.zeros(width, side, side))
        self.register_buffer("center", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(0.0))

    @torch.no_grad()
    def fit(self, hidden: torch.Tensor, shrink: float = 0.1) -> "FeatureDensity":
        mean = hidden.mean(dim=0)
        centred = (hidden - mean).permute(0, 2, 3, 1).flatten(0, 2)
        covariance = centred.T @ centred / len(centred)
        eye = torch.eye(len(covariance)) * (covariance.diagonal().mean() + 1e-6)  # + 1e-6: all channels dead
        precision = torch.linalg.inv((1 - shrink) * covariance + shrink * eye)
        whitener = torch.linalg.cholesky(precision).T  # precision = whitenerᵀ whitener
        self.whitener.copy_(whitener[:, :, None, None])
        self.whitened_mean.copy_(torch.einsum("kc,chw->khw", whitener, mean))
        log_distances = self.log_distances(hidden)
        self.center.fill_(float(log_distances.median()))
        self.scale.fill_(float(log_distances.std()) + 1e-6)
        return self

    def log_distances(self, hidden: torch.Tensor) -> torch.Tensor:
        whitened = F.conv2d(hidden, self.whitener) - self.whitened_mean
        return 0.5 * torch.log(whitened.square().sum(dim=1) + 1e-8)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return (self.log_distances(hidden) - self.center) / self.scale


class ImageStudentNet(nn.Module):
    """Image (n, c, h, w) in [0, 1] -> anomaly map (n, h/4, w/4) in the teacher's standardised units: the map
    distilled from the teacher's, the density of its own hidden features (`FeatureDensity`), their maximum or
    their mean."""

    def __init__(
        self,
        channels: int,
        widths: tuple[int, int] = (16, 16),
        standardiser: ImageStandardiser | None = None,
        size: int = 64,
        student_map: str = "distilled",
    ):
        super().__init__()
        a, b = widths
        self.standardiser = standardiser if standardiser is not None else ImageStandardiser()
        self.body = nn.Sequential(
            nn.Conv2d(channels, a, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(a, b, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(b, b, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(b, b, 3, 1, 2, dilation=2),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(b, 1, 1)
        self.density = FeatureDensity(b, size // MAP_STRIDE)
        self.student_map = student_map

    def hidden_and_distilled(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(self.standardiser(images))
        return hidden, self.head(hidden).squeeze(1)

    def hidden_and_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, distilled = self.hidden_and_distilled(images)
        if self.student_map == "distilled":
            return hidden, distilled
        density = self.density(hidden)
        if self.student_map == "density":
            return hidden, density
        return hidden, torch.maximum(distilled, density) if self.student_map == "max" else (distilled + density) / 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_map(images)[1]


def image_score(maps: torch.Tensor, reduction: str) -> torch.Tensor:
    """One score per image from its map (smoothed 3×3 first, so one noisy location does not decide)."""
    smooth = F.avg_pool2d(maps.unsqueeze(1), 3, 1, 1, count_include_pad=False).flatten(1)
    if reduction == "max":
        return smooth.max(dim=1).values
    k = max(1, smooth.shape[1] // 100)
    return smooth.topk(k, dim=1).values.mean(dim=1)


def params(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))
