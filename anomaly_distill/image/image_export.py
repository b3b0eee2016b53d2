"""The image detector's ONNX graph: images (n, channels, size, size) float32 in [0, 1] -> (score per image, map
per image at full size)."""

from pathlib import Path

import torch
from torch import nn

from anomaly_distill.export import IMAGE_INPUT_NAME, MAP_NAME, OUTPUT_NAME, _export
from anomaly_distill.models.images import image_score


class ImageScoringGraph(nn.Module):
    def __init__(self, detector):
        super().__init__()
        self.net, self.reduction, self.size = detector.net, detector.reduction, detector.size

    def forward(self, images: torch.Tensor):
        small = self.net(images)
        full = nn.functional.interpolate(small.unsqueeze(1), size=(self.size, self.size), mode="bilinear")
        return image_score(small, self.reduction), full.squeeze(1)


def export_image_graph(detector, path: str | Path) -> Path:
    example = torch.zeros(2, detector.channels, detector.size, detector.size)
    metadata = {"kind": "image", "size": detector.size, "channels": detector.channels, "threshold": detector.threshold}
    outputs = {OUTPUT_NAME: "scores", MAP_NAME: "maps"}
    return _export(ImageScoringGraph(detector), example, Path(path), IMAGE_INPUT_NAME, metadata, "images", outputs)
