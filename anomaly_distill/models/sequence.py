"""The sequence teacher: a 1-D convolutional autoencoder over the window at the start of each row."""

import numpy as np
import torch
from torch import nn

from anomaly_distill.models.base import NeuralTeacher, subsample


class ConvAutoencoderNet(nn.Module):
    def __init__(self, channels: int, window: int, bottleneck: int, width: int = 64):
        super().__init__()
        if window % 4:
            raise ValueError(f"the convolutional teacher needs a window divisible by 4, got {window}")
        self.shape = (width, window // 4)
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, width // 2, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width // 2, width, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(width * window // 4, bottleneck),
            nn.ReLU(),
        )
        self.decoder_in = nn.Sequential(nn.Linear(bottleneck, width * window // 4), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(width, width // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(width // 2, channels, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return self.decoder(self.decoder_in(code).view(len(x), *self.shape)), code


class ConvAutoencoderTeacher(NeuralTeacher):
    """Reconstruction error of the window (the newest points weigh double: an alarm should come when they
    arrive, not window-length later); hint features: the code."""

    def _windows(self, X: np.ndarray) -> torch.Tensor:
        channels, window = self.config.sequence
        return self._inputs(X[:, : channels * window]).reshape(len(X), channels, window)

    def _error(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.ones(x.shape[-1])
        weights[-max(1, x.shape[-1] // 8) :] = 2.0
        return (((self.net(x)[0] - x) ** 2) * weights).mean(dim=(1, 2))

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, map_fn=map) -> "ConvAutoencoderTeacher":
        if self.config.sequence is None:
            raise ValueError("the convolutional teacher needs config.sequence = (channels, window)")
        torch.manual_seed(self.seed)
        X, _ = subsample(X, None, self.config.max_fit_rows, self.seed)
        channels, window = self.config.sequence
        self.net = ConvAutoencoderNet(channels, window, min(self.config.bottleneck, window // 4))
        self._train(lambda x: self._error(x).mean(), [self._windows(X)])
        return self

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([self._error(x).numpy() for x in self._windows(X).split(8192)]).astype(np.float64)

    @torch.no_grad()
    def features(self, X: np.ndarray) -> np.ndarray:
        return self.net(self._windows(X))[1].numpy()
