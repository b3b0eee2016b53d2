"""A series detector that keeps learning from its stream, under NAB's rules: each point is scored from the points
before it, then learnt from.

Every `refresh_every` points the teacher's reference slides to the most recent windows (a k-nearest-neighbour
distance over windows normalised by that reference's median and spread) and the student is re-distilled from it:
by default 32 k-means prototypes of the reference with offsets fitted to the teacher's scores (`PrototypeStudent`),
or a one-layer network trained on the teacher's scores of the reference and of synthetic variants (`TinyStudent`).
Between refreshes the student alone scores each point. Coarser views (`coarse_scales`, by default means of 4 and
of 16 points) do the same over means of consecutive points, each with its own teacher, student and calibration,
and a point's score is the largest of the views'. A raw score becomes an alarm
score in [0, 1] by its rank among the trailing raw scores; a value outside the range of the trailing values is an
alarm of its own; after an alarm the detector rests (scores 0) for `rest` points, so that one incident is one
alarm. The state is plain lists and arrays: `state()` saves it and
`from_state` goes on exactly where it stopped.
"""

import bisect
import time
from collections import deque

import numpy as np

from anomaly_distill.config import OnlineConfig
from anomaly_distill.detector import ExportError
from anomaly_distill.series.timeseries import Normaliser

NEAR_ONE = 0.01  # alarm scores above the calibrated range sit in (1 - NEAR_ONE, 1)
ADAM_LR, ADAM_BETAS = 1e-2, (0.9, 0.999)


def squared_distances(rows: np.ndarray, points: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distance of every row to every point, by the expansion (one matrix product); `norms`: the
    points' squared norms, when the caller keeps them."""
    norms = (points**2).sum(1)[None] if norms is None else norms
    return (rows * rows).sum(1)[:, None] - 2 * rows @ points.T + norms


class KnnTeacher:
    """Mean Euclidean distance to the k nearest reference windows, as log(1 + d)."""

    def __init__(self, reference: np.ndarray, neighbours: int):
        self.reference = reference
        self.norms = (reference**2).sum(1)[None]  # once per reference, not per scored point
        self.k = max(1, min(neighbours, len(reference) - 1))

    def score(self, rows: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        squared = squared_distances(rows, self.reference, self.norms)
        if leave_one_out:
            np.fill_diagonal(squared, np.inf)
        nearest = np.partition(np.maximum(squared, 0.0), self.k - 1, axis=1)[:, : self.k]
        return np.log1p(np.sqrt(nearest).mean(1))


class TinyStudent:
    """window -> ReLU(W1 x + b1) -> w2 · h + b2, scored in numpy (a point costs two small products)."""

    def __init__(self, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: float):
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, float(b2)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.maximum(rows @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    @property
    def n_params(self) -> int:
        return self.w1.size + self.b1.size + self.w2.size + 1

    @classmethod
    def distil(cls, rows: np.ndarray, targets: np.ndarray, hidden: int, epochs: int, seed: int) -> "TinyStudent":
        """Full-batch Adam on the squared error, in numpy: a few thousand windows and a few hundred weights train
        in milliseconds, and scoring never needs torch (its import alone costs seconds in a fresh process)."""
        rng = np.random.default_rng(seed)
        params = [
            rng.normal(size=(rows.shape[1], hidden)) / np.sqrt(rows.shape[1]),
            np.zeros(hidden),
            rng.normal(size=hidden) / np.sqrt(hidden),
            np.array(float(targets.mean())),
        ]
        moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
        for step in range(1, epochs + 1):
            grads = cls._gradients(params, rows, targets)
            for p, g, (m, v) in zip(params, grads, moments):
                m *= ADAM_BETAS[0]
                m += (1 - ADAM_BETAS[0]) * g
                v *= ADAM_BETAS[1]
                v += (1 - ADAM_BETAS[1]) * g * g
                m_hat, v_hat = m / (1 - ADAM_BETAS[0] ** step), v / (1 - ADAM_BETAS[1] ** step)
                p -= ADAM_LR * m_hat / (np.sqrt(v_hat) + 1e-8)
        return cls(params[0], params[1], params[2], float(params[3]))

    @staticmethod
    def _gradients(params: list[np.ndarray], rows: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
        w1, b1, w2, b2 = params
        pre = rows @ w1 + b1
        hidden = np.maximum(pre, 0.0)
        error = 2 * (hidden @ w2 + b2 - targets) / len(rows)  # d(mean squared error)/d(output)
        back = np.outer(error, w2) * (pre > 0)
        return [rows.T @ back, back.sum(0), hidden.T @ error, np.array(error.sum())]

    def state(self) -> dict:
        return {"w1": self.w1.tolist(), "b1": self.b1.tolist(), "w2": self.w2.tolist(), "b2": self.b2}

    @classmethod
    def from_state(cls, saved: dict) -> "TinyStudent":
        return cls(*(np.asarray(saved[k], dtype=np.float64) for k in ("w1", "b1", "w2")), saved["b2"])


class PrototypeStudent:
    """Distance to the nearest of a few prototype windows, minus that prototype's distilled offset, as log(1 + d).

    The prototypes are k-means centres of the reference windows; each one's offset is fitted so that the student's
    score of the windows nearest to it follows the teacher's (the median gap over them; a score never falls below
    0). A point costs one product with `prototypes` windows, like the MLP's first layer, and the score keeps the
    teacher's shape: far from every normal window is far, whatever the direction."""

    def __init__(self, centres: np.ndarray, offsets: np.ndarray):
        self.centres, self.offsets = centres, offsets
        self.norms = (centres**2).sum(1)[None]

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum((self._distances(rows) - self.offsets[None]).min(1), 0.0))

    def _distances(self, rows: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(squared_distances(rows, self.centres, self.norms), 0.0))

    @property
    def n_params(self) -> int:
        return self.centres.size + self.offsets.size

    @classmethod
    def distil(
        cls, reference: np.ndarray, targets: np.ndarray, prototypes: int, seed: int, residuals: int = 0
    ) -> "PrototypeStudent":
        """Centres by k-means over the reference windows; each centre's offset is the median, over the windows
        nearest to it, of (distance to the centre - the teacher's distance), so the two agree inside the reference
        and a window far from all of it is far for both. Then `residuals` times: the reference window the student
        scores furthest above the teacher becomes a centre of its own, scoring the teacher's score at itself."""
        centres = kmeans(reference, min(prototypes, len(reference)), np.random.default_rng(seed))
        student = cls.with_offsets(centres, reference, targets)
        for _ in range(min(residuals, len(reference))):
            worst = int(np.argmax(student.score(reference) - targets))
            if student.score(reference[worst : worst + 1])[0] <= targets[worst]:
                break  # nowhere above the teacher
            centres = np.vstack([student.centres, reference[worst]])
            student = cls(centres, np.append(student.offsets, -np.expm1(targets[worst])))
        return student

    @classmethod
    def with_offsets(cls, centres: np.ndarray, reference: np.ndarray, targets: np.ndarray) -> "PrototypeStudent":
        """These centres, each with the median over its nearest reference windows of (distance - teacher's)."""
        distances = cls(centres, np.zeros(len(centres)))._distances(reference)
        nearest = distances.argmin(1)
        gaps = distances[np.arange(len(reference)), nearest] - np.expm1(targets)
        offsets = [np.median(gaps[nearest == p]) if np.any(nearest == p) else 0.0 for p in range(len(centres))]
        return cls(centres, np.asarray(offsets, dtype=np.float64))

    def state(self) -> dict:
        return {"centres": self.centres.tolist(), "offsets": self.offsets.tolist()}

    @classmethod
    def from_state(cls, saved: dict) -> "PrototypeStudent":
        return cls(np.asarray(saved["centres"], dtype=np.float64), np.asarray(saved["offsets"], dtype=np.float64))


def kmeans(rows: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """k-means++ seeding, then Lloyd's steps until no row changes centre (at most `iterations`); an emptied
    centre keeps its place."""
    centres = [rows[rng.integers(len(rows))]]
    nearest = ((rows - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(rows), p=nearest / total) if total > 0 else rng.integers(len(rows))
        centres.append(rows[pick])
        nearest = np.minimum(nearest, ((rows - rows[pick]) ** 2).sum(1))
    return lloyd(rows, np.array(centres), iterations)


def lloyd(rows: np.ndarray, centres: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Lloyd's steps from `centres` until no row changes centre (at most `iterations`); an emptied centre keeps its
    place."""
    centres, assigned, k = centres.copy(), None, len(centres)
    for _ in range(iterations):
        squared = squared_distances(rows, centres)
        if assigned is not None and np.array_equal(assigned, squared.argmin(1)):
            break
        assigned = squared.argmin(1)
        members = np.zeros((len(rows), k))
        members[np.arange(len(rows)), assigned] = 1.0
        counts = members.sum(0)
        filled = counts > 0
        centres[filled] = (members.T @ rows)[filled] / counts[filled, None]
    return centres


def synthetic_windows(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Variants the student must answer as the teacher does: noise at four scales, and level shifts from a random
    point of the window on (windows unlike any in the reference, which alone would teach only "normal")."""
    n, width = reference.shape
    base = reference[rng.integers(0, n, n)]
    noisy = base + rng.normal(size=base.shape) * rng.choice([0.1, 0.3, 1.0, 3.0], size=(n, 1))
    starts = rng.integers(1, width, (n, 1))
    shifted = base + rng.normal(size=(n, 1)) * 3 * (np.arange(width) >= starts)
    return np.concatenate([noisy, shifted])


class RankCalibrator:
    """A raw score's share of the trailing `size` raw scores below it (mid-rank); above their maximum an exponential
    tail in units of their interquartile range, so that a far outlier still ranks above a near one."""

    def __init__(self, size: int, history: list[float] | None = None):
        self.size = size
        self.history = deque(history or [], maxlen=size)
        self.sorted = sorted(self.history)

    def __call__(self, raw: float) -> float:
        m = len(self.sorted)
        if m < 10:
            return 0.0
        if raw <= self.sorted[-1]:  # ties count half: a flat stretch ranks mid-way, not at the top
            return (bisect.bisect_left(self.sorted, raw) + bisect.bisect_right(self.sorted, raw)) / (2 * (m + 1))
        spread = max(self.sorted[(3 * (m - 1)) // 4] - self.sorted[(m - 1) // 4], 1e-12)
        return 1.0 - np.exp(-(raw - self.sorted[-1]) / spread) / (m + 1)

    def add(self, raw: float) -> None:
        if len(self.history) == self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.history[0])]
        self.history.append(raw)
        bisect.insort(self.sorted, raw)


class RangeCheck:
    """Running minimum and maximum of the trailing `size` values (all of them when size is 0), as monotonic queues
    of (index, value); a value past that range by more than `margin` of its width is an alarm."""

    def __init__(self, size: int, margin: float, highs=(), lows=()):
        self.size, self.margin = size, margin
        self.highs, self.lows = deque(tuple(p) for p in highs), deque(tuple(p) for p in lows)

    def __call__(self, value: float) -> float:
        if not self.highs:
            return 0.0
        high, low = self.highs[0][1], self.lows[0][1]
        past = max(value - high, low - value)
        if past <= 0:
            return 0.0
        width = high - low
        beyond = past / width if width > 0 else np.inf
        if beyond <= self.margin:
            return 0.0
        return 1.0 - NEAR_ONE * float(np.exp(-beyond / max(self.margin, 1e-3)))

    def add(self, index: int, value: float) -> None:
        for queue, keep in ((self.highs, lambda v: v > value), (self.lows, lambda v: v < value)):
            while queue and not keep(queue[-1][1]):
                queue.pop()
            queue.append((index, value))
            while self.size and queue[0][0] <= index - self.size:
                queue.popleft()


class OnlineSeriesDetector:
    """One value series, scored and learnt point by point. `score(values)` returns one alarm score in [0, 1] per
    value, in order; it may be called with any split of the stream and gives the same scores."""

    kind = "online_series"
    explains = False

    def __init__(self, config: OnlineConfig):
        self.config = config
        self.seen = 0  # points scored so far
        self.since_refresh = 0
        self.refreshes = 0
        self.recent: list[float] = []  # enough values to rebuild the reference windows
        self.center, self.scale = 0.0, 1.0
        self.offset, self.spread = 0.0, 1.0  # median and spread of the reference's scores (config.frame)
        self.teacher: KnnTeacher | None = None
        self.student: TinyStudent | PrototypeStudent | None = None
        self.calibrator = RankCalibrator(config.calibration)
        self.range = RangeCheck(config.range_history, config.range_margin)
        self.last_alarm = -(10**12)
        self.own_refresh_seconds = 0.0  # spent refreshing (teacher + distillation), not on the request path
        self.coarse = [type(self)(config.coarse(scale)) for scale in config.coarse_scales]
        self.blocks: list[list[float]] = [[] for _ in config.coarse_scales]  # the points of each view's next mean

    # -- scoring -------------------------------------------------------------------------------------------
    def score(self, values, rested: bool = True) -> np.ndarray:
        """Alarm scores: 0 while resting after an alarm (`rested`), else the calibrated scores before the rest (what
        a ranking metric such as AUROC reads); the state advances the same way either way."""
        return self.scores(values)[0 if rested else 1]

    def scores(self, values) -> tuple[np.ndarray, np.ndarray]:
        """(alarm scores with the rest applied, calibrated scores without it) of `values`, in order."""
        values = np.asarray(values, dtype=np.float64).ravel()
        rested, calibrated = np.empty(len(values)), np.empty(len(values))
        done = 0
        while done < len(values):
            # the model is fixed until the next refresh: its raw scores for that stretch come in one product
            stretch = values[done : done + self._until_refresh()]
            raw = self._raw_scores(stretch)
            for i, value in enumerate(stretch):
                rested[done + i], calibrated[done + i] = self._score_point(float(value), raw[i])
            done += len(stretch)
        return rested, calibrated

    def _until_refresh(self) -> int:
        if self.teacher is None:
            return max(1, self.config.warmup - self.seen)
        return max(1, self.config.refresh_every - self.since_refresh)

    def _raw_scores(self, stretch: np.ndarray) -> np.ndarray:
        if self.teacher is None:
            return np.full(len(stretch), np.nan)
        w = self.config.window
        if len(stretch) == 1:  # one live point: its window directly, the same numbers as the strided view below
            rows = ((np.array(self.recent[-(w - 1) :] + [float(stretch[0])]) - self.center) / self.scale)[None]
        else:
            rows = self.window_rows(np.concatenate([np.asarray(self.recent[-(w - 1) :]), stretch]))
        return (self.scorer().score(rows) - self.offset) / self.spread

    def window_rows(self, values: np.ndarray) -> np.ndarray:
        """The normalised window ending at each value from the window-th on (as the current scorer reads them)."""
        return (np.lib.stride_tricks.sliding_window_view(values, self.config.window) - self.center) / self.scale

    def scorer(self) -> KnnTeacher | TinyStudent | PrototypeStudent:
        return self.student if self.config.scorer == "student" else self.teacher

    def _score_point(self, value: float, raw: float) -> tuple[float, float]:
        calibrated = max(self._rank(raw), self._coarse_ranks(value))
        outside = self.range(value) if self.seen >= self.config.warmup else 0.0
        score = max(calibrated, outside)
        resting = self.seen - self.last_alarm <= self.config.rest
        if score >= self.config.alarm_level and not resting:
            self.last_alarm = self.seen
        self._learn(value, raw)
        return 0.0 if resting else score, score

    def _rank(self, raw: float) -> float:
        return 0.0 if np.isnan(raw) else self.calibrator(raw)

    def _coarse_ranks(self, value: float) -> float:
        """The largest calibrated score of the coarser views whose block of points `value` completes (0 if none)."""
        best = 0.0
        for scale, block, view in zip(self.config.coarse_scales, self.blocks, self.coarse):
            block.append(value)
            if len(block) == scale:
                # np.mean's own sum and division (the same number), without its overhead on every block
                best = max(best, view.rank_and_learn(float(np.add.reduce(np.asarray(block)) / scale)))
                block.clear()
        return best

    def rank_and_learn(self, value: float) -> float:
        """A coarser view's step: the calibrated score of one mean, then learn from it (no range alarm, no rest)."""
        raw = self._raw_scores(np.array([value]))[0]
        calibrated = self._rank(raw)
        self._learn(value, raw)
        return calibrated

    # -- learning ------------------------------------------------------------------------------------------
    def _learn(self, value: float, raw: float) -> None:
        if not np.isnan(raw):
            self.calibrator.add(float(raw))
        self.range.add(self.seen, value)
        self.recent.append(value)
        self.seen += 1
        self.since_refresh += 1
        due = self.teacher is None or self.since_refresh >= self.config.refresh_every
        if due and self.seen >= self.config.warmup:
            self.refresh()

    def refresh(self) -> None:
        """Slide the teacher's reference to the latest windows and re-distil the student from it (the nightly loop
        in miniature; the teacher runs here only, never per point when the student scores)."""
        c, start = self.config, time.perf_counter()
        self.recent = self.recent[-(c.reference + c.window - 1) :]
        values = np.asarray(self.recent)
        normaliser = Normaliser.fit(values)
        self.center, self.scale = float(normaliser.center), float(normaliser.scale)
        reference = self.window_rows(values)
        self.teacher = KnnTeacher(reference, c.neighbours)
        own = self.teacher.score(reference, leave_one_out=True)
        if c.scorer == "student":
            self.student = self._distil(reference, own)
            if c.frame == "student":
                own = self.student.score(reference)
        self._calibrate_frame(own)
        self.refreshes += 1
        self.since_refresh = 0
        self.own_refresh_seconds += time.perf_counter() - start

    @property
    def refresh_seconds(self) -> float:
        return self.own_refresh_seconds + sum(view.refresh_seconds for view in self.coarse)

    def _calibrate_frame(self, own: np.ndarray) -> None:
        """Raw scores are read relative to the scores of the current reference windows (the teacher's leave-one-out
        ones, or the student's own: `config.frame`), so that a refresh (a new student, a slid reference) does not
        move every later score against the trailing ones."""
        q1, median, q3 = np.percentile(own, [25, 50, 75])
        self.offset, self.spread = float(median), float(max(q3 - q1, 1e-9))

    def _distil(self, reference: np.ndarray, targets: np.ndarray) -> TinyStudent | PrototypeStudent:
        c = self.config
        seed = c.seed * 1_000_003 + self.refreshes
        if c.student == "prototypes":
            return PrototypeStudent.distil(reference, targets, c.prototypes, seed, c.residual_prototypes)
        rng = np.random.default_rng([c.seed, self.refreshes])
        synthetic = synthetic_windows(reference, rng)
        rows = np.concatenate([reference, synthetic])
        targets = np.concatenate([targets, self.teacher.score(synthetic)])
        return TinyStudent.distil(rows, targets, c.student_hidden, c.student_epochs, seed)

    @property
    def n_params(self) -> int:
        """What scores each point: the student's weights, or the teacher's reference windows (every view's)."""
        if self.config.scorer == "student":
            own = self.student.n_params if self.student else 0
        else:
            own = self.teacher.reference.size if self.teacher else 0
        return own + sum(view.n_params for view in self.coarse)

    # -- state ---------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "config": self.config.model_dump(),
            "seen": self.seen,
            "since_refresh": self.since_refresh,
            "refreshes": self.refreshes,
            "recent": list(self.recent),
            "center": self.center,
            "scale": self.scale,
            "offset": self.offset,
            "spread": self.spread,
            "student": self.student.state() if self.student else None,
            "calibration": list(self.calibrator.history),
            "range": {"highs": [list(p) for p in self.range.highs], "lows": [list(p) for p in self.range.lows]},
            "last_alarm": self.last_alarm,
            "coarse": [view.state() for view in self.coarse],
            "blocks": [list(block) for block in self.blocks],
        }

    @classmethod
    def from_state(cls, saved: dict) -> "OnlineSeriesDetector":
        # a state saved before coarser views, prototype students, the teacher's frame and the coarser views'
        # residual prototypes existed goes on as it was trained
        before = {"coarse_scales": [], "student": "mlp", "frame": "student", "coarse_residual_prototypes": 0}
        config = OnlineConfig.model_validate({**before, **saved["config"]})
        detector = cls(config)
        detector.coarse = [cls.from_state(view) for view in saved.get("coarse", [])]
        detector.blocks = [[float(v) for v in block] for block in saved.get("blocks", [])]
        detector.seen, detector.since_refresh = saved["seen"], saved["since_refresh"]
        detector.refreshes, detector.last_alarm = saved["refreshes"], saved["last_alarm"]
        detector.recent = [float(v) for v in saved["recent"]]
        detector.center, detector.scale = saved["center"], saved["scale"]
        detector.offset, detector.spread = saved["offset"], saved["spread"]
        detector.calibrator = RankCalibrator(detector.config.calibration, [float(v) for v in saved["calibration"]])
        detector.range = RangeCheck(
            detector.config.range_history, detector.config.range_margin, saved["range"]["highs"], saved["range"]["lows"]
        )
        if saved["refreshes"]:
            detector._rebuild_teacher()
        if saved["student"]:
            kind = PrototypeStudent if detector.config.student == "prototypes" else TinyStudent
            detector.student = kind.from_state(saved["student"])
        return detector

    def _rebuild_teacher(self) -> None:
        """The teacher's reference is the windows of the values kept at the last refresh (the first ones of
        `recent`), normalised as then: it is rebuilt, not stored twice."""
        kept = np.asarray(self.recent[: len(self.recent) - self.since_refresh])
        self.teacher = KnnTeacher(self.window_rows(kept), self.config.neighbours)


class OnlineSeriesModel:
    """A registered online series model: one online detector per value column, warmed on the training series
    (its state after the last training point), scoring a point by the largest of its columns' scores.

    The version is a fixed artifact: `predict(frame)` replays the frame from a copy of that warm state and leaves
    the model as it was. The live service keeps each series' state as data (`stores/series_state.py`) and goes
    on from it with `advance`; both call the same detectors in the same order."""

    kind = "online_series"
    contract_kind = "timeseries"
    explains = False
    onnx_name = None  # no fixed graph: it learns from every point it scores
    history = property(lambda self: [])  # warmed by replay, not trained in epochs

    def __init__(self, timestamp_column: str, value_columns: list[str], states: list[dict], threshold: float):
        self.timestamp_column, self.value_columns = timestamp_column, value_columns
        self.states, self.threshold = states, float(threshold)

    @classmethod
    def warm(cls, frame, timestamp_column: str, value_columns: list[str], config: OnlineConfig):
        """The model after replaying `frame` (the training series), the scores it gave each point on the way
        (prequential: every point scored before it was learnt from) and the teacher's, as (alarm, calibrated)
        pairs (see `advance`), and the seconds its refreshes took."""
        values = frame[value_columns].to_numpy(dtype=np.float64)
        replays = {}
        for scorer in ("student", "teacher"):
            detectors = [OnlineSeriesDetector(config.model_copy(update={"scorer": scorer})) for _ in value_columns]
            replays[scorer] = (detectors, *cls._combine(detectors, values))
        students = replays["student"][0]
        model = cls(timestamp_column, value_columns, [d.state() for d in students], config.alarm_level)
        seconds = sum(d.refresh_seconds for d in students)
        return model, replays["student"][1:], replays["teacher"][1:], seconds

    @staticmethod
    def _combine(detectors: list[OnlineSeriesDetector], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_column = [d.scores(values[:, i]) for i, d in enumerate(detectors)]
        return tuple(np.max([pair[k] for pair in per_column], axis=0) for k in (0, 1))

    def detectors(self, states: list[dict] | None = None) -> list[OnlineSeriesDetector]:
        return [OnlineSeriesDetector.from_state(s) for s in (states or self.states)]

    def advance(self, states: list[dict] | None, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """From `states` (None: the warm state), the points `values` (points x value columns, oldest first): their
        alarm scores (0 while resting after an alarm), their calibrated scores, and the states after them."""
        detectors = self.detectors(states)
        alarms, calibrated = self.run(detectors, values)
        return alarms, calibrated, [d.state() for d in detectors]

    def run(self, detectors: list[OnlineSeriesDetector], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`advance` on live detectors (they move on past `values`)."""
        values = np.asarray(values, dtype=np.float64).reshape(len(values), len(self.value_columns))
        return self._combine(detectors, values)

    def score(self, frame) -> np.ndarray:
        return self.score_rows(frame[self.value_columns].to_numpy(dtype=np.float64))

    def score_rows(self, values: np.ndarray) -> np.ndarray:
        """Points (points x value columns, oldest first) replayed from the warm state: calibrated scores."""
        return self.advance(None, values)[1]

    def predict(self, frame, threshold: float | None = None):
        alarms, calibrated, _ = self.advance(None, frame[self.value_columns].to_numpy(dtype=np.float64))
        return self.answer(frame, alarms, calibrated, threshold)

    def answer(self, frame, alarms: np.ndarray, calibrated: np.ndarray, threshold: float | None = None):
        """score: the calibrated score (for ranking); is_anomaly: an alarm, at most one per `rest` points."""
        # pandas only for a frame's answer: the service scores points without it
        import pandas as pd

        return pd.DataFrame(
            {
                self.timestamp_column: frame[self.timestamp_column].to_numpy(),
                "score": calibrated,
                "is_anomaly": alarms >= (self.threshold if threshold is None else threshold),
            }
        )

    @property
    def n_params(self) -> int:
        return sum(d.n_params for d in self.detectors())

    @property
    def window(self) -> int:
        """Points of history a score needs from the caller: none, the state holds the past."""
        return 1

    def state(self) -> dict:
        return {
            "online": {
                "timestamp_column": self.timestamp_column,
                "value_columns": self.value_columns,
                "states": self.states,
                "threshold": self.threshold,
            }
        }

    @classmethod
    def from_state(cls, saved: dict) -> "OnlineSeriesModel":
        online = saved["online"]
        return cls(online["timestamp_column"], online["value_columns"], online["states"], online["threshold"])

    def export_onnx(self, path):
        raise ExportError(
            "an online series model has no fixed graph: it learns from every point it scores (its student is "
            "re-distilled every refresh_every points); it is served by the pyfunc and the HTTP service"
        )
