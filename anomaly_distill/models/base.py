"""What every teacher shares: training-row subsampling, the score calibrator, and the neural teachers' training
loop."""

import numpy as np
import torch

from anomaly_distill.config import TeacherConfig
from anomaly_distill.models.layers import squash


def subsample(X: np.ndarray, y: np.ndarray | None, max_rows: int, seed: int):
    if len(X) <= max_rows:
        return X, y
    index = np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))
    return X[index], None if y is None else y[index]


class NeuralTeacher:
    def __init__(self, config: TeacherConfig, seed: int = 0, squash_scale: float = 5.0):
        self.config, self.seed, self.squash_scale = config, seed, squash_scale

    def _train(self, loss_fn, tensors: list[torch.Tensor]) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
        n = len(tensors[0])
        self.net.train()
        for _ in range(self.config.epochs):
            for batch in torch.randperm(n, generator=generator).split(256):
                optimizer.zero_grad()
                loss_fn(*(t[batch] for t in tensors)).backward()
                optimizer.step()
        self.net.eval()

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return squash(torch.as_tensor(X, dtype=torch.float32), self.squash_scale)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())


class EcdfCalibrator:
    """Maps a score to the share of reference scores at or below it, interpolated between reference values."""

    def __init__(self, reference_scores: np.ndarray):
        values, counts = np.unique(np.asarray(reference_scores, dtype=np.float64), return_counts=True)
        self.values = values
        self.fractions = np.cumsum(counts) / counts.sum()

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if len(self.values) == 1:
            return (scores >= self.values[0]).astype(np.float64)
        return np.interp(scores, self.values, self.fractions, left=0.0, right=1.0)
