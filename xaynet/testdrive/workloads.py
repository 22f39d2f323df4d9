"""What test-drive's participants send, and what each global model is checked against.

* `RandomVectors` (the default): participant i sends uniform(-1, 1) weights drawn from
  (i, round seed) with scalar 1; the global model must be their plain mean. It is rebuilt
  from its name in every driver process (`--workers`).
* `DigitsTask` (`--task digits`): participant i trains a softmax regression on its non-IID
  shard of the digits data, starting from the latest global model it fetches, and sends it
  with scalar nᵢ / n_max; the global model must be the weighted mean Σ sᵢwᵢ / Σ sᵢ of exactly
  the models the round aggregated, and is then scored on the held-out test set.

Both refuse to send a model the round's mask bound would clamp (the bound advisor's
verdict), so a check that passes means nothing was clamped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.config import BoundType, DataType, MaskConfig, MaskConfigPair
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk import Participant, Task
from xaynet.sdk.bounds import advise, check_clamping, describe_bound
from xaynet.testdrive import learning
from xaynet.testdrive.records import TOLERANCE, RoundRecord, local_model
from xaynet.testdrive.tally import RoundTally, distance


class RefusedModelError(RuntimeError):
    """test-drive refuses to send a model the round would clamp or cannot take."""


def refuse_if_clamped(index: int, weights: Any, scalar: float, configs: MaskConfigPair) -> None:
    clamping = check_clamping(weights, scalar, configs)
    if clamping is not None:
        raise RefusedModelError(f"test-drive refuses participant {index}'s model: {clamping.message()}")


class Workload(Protocol):
    name: str
    bound_type: BoundType  # what the embedded coordinator is configured with
    checked_against: str  # what every global model must equal, in words

    def model_length(self, requested: int) -> int: ...
    def describe(self) -> list[str]: ...
    def attach(self, index: int, participant: Participant) -> None: ...
    def check(self, model: GlobalModel, tally: RoundTally) -> tuple[float, float]: ...
    def evaluate(self, model: GlobalModel, record: RoundRecord) -> None: ...
    def summary(self, completed: list[RoundRecord]) -> list[str]: ...


class RandomVectors:
    name = "random"
    bound_type = BoundType.B0
    checked_against = "the mean"

    def model_length(self, requested: int) -> int:
        return requested

    def describe(self) -> list[str]:
        return []

    def attach(self, index: int, participant: Participant) -> None:
        def provide(params: RoundParameters) -> npt.NDArray[np.float32]:
            weights = local_model(index, params.seed, params.model_length)
            refuse_if_clamped(index, weights, participant.scalar, params.mask_config)
            return weights

        participant.model_provider = provide

    def check(self, model: GlobalModel, tally: RoundTally) -> tuple[float, float]:
        """Distance to the plain mean of the accepted updates (every scalar is 1)."""
        return distance(model, tally.expected()), TOLERANCE

    def evaluate(self, model: GlobalModel, record: RoundRecord) -> None:
        return None

    def summary(self, completed: list[RoundRecord]) -> list[str]:
        return []


class DigitsTask:
    """Federated softmax regression on non-IID digits, weighted by sample count."""

    name = "digits"
    checked_against = "the weighted mean (scalar n_i / n_max)"
    # Softmax weights on [0, 1] pixels grow past 1 within a few rounds (B0 would clamp them)
    # and stay far below 100; every model is checked against the round's bound before sending.
    bound_type = BoundType.B2

    def __init__(self, participants: int, *, seed: int = 0, alpha: float = 0.5, epochs: int = 5) -> None:
        self.data = learning.load_digits(seed)
        limit = learning.max_participants(self.data)
        if participants > limit:
            raise ValueError(
                f"the digits task splits {len(self.data.train_y)} training images: at most {limit} "
                f"participants (got {participants})"
            )
        rng = np.random.default_rng(seed)
        self.alpha, self.epochs, self.seed = alpha, epochs, seed
        self.shards = learning.dirichlet_shards(self.data.train_y, participants, alpha, rng)
        sizes = np.array([len(s) for s in self.shards])
        self.scalars = sizes / sizes.max()  # n_i / n_max: in [0, 1], so no bound clamps it
        self.baseline = learning.central_baseline(self.data)
        self._lock = threading.Lock()
        self.largest_scaled = 0.0  # max |w·s| over every model sent: what the bound had to hold
        self.vect_config: MaskConfig | None = None  # the rounds' config, as the coordinator published it

    def model_length(self, requested: int) -> int:
        return learning.MODEL_LENGTH

    def describe(self) -> list[str]:
        sizes = [len(s) for s in self.shards]
        skew = learning.label_skew(self.data.train_y, self.shards)
        return [
            f"task digits: softmax regression ({learning.MODEL_LENGTH} weights), {self.epochs} local epochs "
            f"per round; {len(self.data.train_y)} training images split non-IID (Dirichlet α={self.alpha:g} "
            f"over labels: {min(sizes)}–{max(sizes)} images each, the most common digit is "
            f"{skew:.0%} of a shard on average); scalar n_i / n_max",
            f"central baseline (scikit-learn LogisticRegression, all training data): "
            f"{self.baseline:.1%} on {len(self.data.test_y)} test images",
        ]

    def attach(self, index: int, participant: Participant) -> None:
        participant.scalar = float(self.scalars[index])
        jobs: dict[bytes, asyncio.Task[npt.NDArray[np.float32]]] = {}

        async def train(params: RoundParameters) -> npt.NDArray[np.float32]:
            # Like a device: fetch the latest global model, train on the local shard from it.
            published = await participant.global_model()
            start = learning.initial_model() if published is None else published.to_numpy(DataType.F32)
            rng = np.random.default_rng([self.seed, index, int.from_bytes(params.seed[:8], "little")])
            shard = self.shards[index]
            return await asyncio.to_thread(
                learning.train_local,
                start,
                self.data.train_x[shard],
                self.data.train_y[shard],
                rng,
                epochs=self.epochs,
            )

        def start(params: RoundParameters) -> asyncio.Task[npt.NDArray[np.float32]]:
            if params.model_length != learning.MODEL_LENGTH:
                raise RefusedModelError(
                    f"the digits task sends {learning.MODEL_LENGTH} weights; the coordinator's rounds "
                    f"take {params.model_length} (configure it with [model] length = {learning.MODEL_LENGTH})"
                )
            if params.seed not in jobs:
                jobs.clear()
                job = asyncio.get_running_loop().create_task(train(params))
                # A failure surfaces through `provide`; never as "exception was never retrieved".
                job.add_done_callback(lambda done: done.cancelled() or done.exception())
                jobs[params.seed] = job
            return jobs[params.seed]

        announce = participant.events.task

        def on_task(chosen: Task, params: RoundParameters) -> None:
            announce(chosen, params)
            if chosen is Task.UPDATE:  # train while the sum phase runs, like a device would
                start(params)

        def provide(params: RoundParameters) -> npt.NDArray[np.float32] | None:
            job = start(params)
            if not job.done():
                return None  # asked again on the next tick
            if job.exception() is not None:  # the global model did not arrive: fetch it again
                jobs.clear()
                return None
            weights = job.result()
            refuse_if_clamped(index, weights, participant.scalar, params.mask_config)
            self._remember(params.mask_config, weights, participant.scalar)
            return weights

        participant.events.task = on_task
        participant.model_provider = provide

    def _remember(self, configs: MaskConfigPair, weights: Any, scalar: float) -> None:
        with self._lock:
            self.vect_config = configs.vect
            self.largest_scaled = max(self.largest_scaled, float(advise(weights, scalar).scaled_peak))

    def check(self, model: GlobalModel, tally: RoundTally) -> tuple[float, float]:
        """Distance to Σ sᵢwᵢ / Σ sᵢ over the accepted updates, and the quantisation tolerance.

        The encoding floors each sᵢwᵢ and each sᵢ to 1/E (MASKING.md §6.3), so numerator and
        denominator may each be off by n/E: |error| ≤ n·(1 + |mean|) / (E·Σ sᵢ).
        """
        expected = tally.expected()
        if self.vect_config is None:
            raise ValueError("no model of this round was sent")
        exp_shift = float(self.vect_config.exp_shift)
        peak = float(np.max(np.abs(expected)))
        tolerance = len(tally.accepted) * (1 + peak) / (exp_shift * tally.scalar_sum)
        return distance(model, expected), tolerance + 1e-12

    def evaluate(self, model: GlobalModel, record: RoundRecord) -> None:
        weights = model.to_numpy(DataType.F32)
        record.accuracy = learning.accuracy(weights, self.data.test_x, self.data.test_y)

    def summary(self, completed: list[RoundRecord]) -> list[str]:
        scored = [r for r in completed if r.accuracy is not None]
        if not scored:
            return []
        last = scored[-1]
        assert last.accuracy is not None
        config = self.vect_config
        bound = describe_bound(config.bound_type, config.data_type) if config else "the bound"
        return [
            f"federated accuracy after round {last.round_id}: {last.accuracy:.1%} = "
            f"{last.accuracy / self.baseline:.0%} of the central baseline ({self.baseline:.1%}); "
            f"nothing clamped: largest |weight × scalar| {self.largest_scaled:.3g} within "
            f"{bound}"
        ]


def make_workload(task: str, participants: int) -> Workload:
    if task == "digits":
        return DigitsTask(participants)
    if task == "random":
        return RandomVectors()
    raise ValueError(f"unknown task {task!r}: random or digits")
