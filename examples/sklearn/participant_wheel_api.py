"""scikit-learn devices with the wheel's API: subclass ParticipantABC, spawn_participant.

    python examples/sklearn/participant_wheel_api.py --url http://127.0.0.1:8081 --devices 10 --rounds 3

Each device is a thread (like the original `xaynet-sdk-python`) holding its own shard. With
`--wheel` the same class runs on the original wheel (`pip install xaynet-sdk-python`) instead of
`xaynet.sdk` — the API is the same, only the import differs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import N_MAX, accuracy, shard, train

from xaynet.sdk.flatten import flatten


class Models:
    """Global models seen by any device (all devices see the same ones), printed once each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[bytes] = []
        self.advised = False

    def global_model(self, vector: list[float]) -> None:
        key = np.asarray(vector, dtype=np.float32).tobytes()
        with self.lock:
            if key in self.seen:
                return
            self.seen.append(key)
            print(f"global model {len(self.seen)}: test accuracy {accuracy(vector):.1%}", flush=True)

    def trained(self, vector: np.ndarray) -> None:
        with self.lock:
            if not self.advised:  # which bound does the model need? (see README)
                self.advised = True
                print(f"local model: {flatten(vector).advice(max_scalar=1.0)}", flush=True)


def device_class(api: Any) -> type:
    class Device(api.ParticipantABC):  # type: ignore[misc, name-defined]
        def __init__(self, index: int, devices: int, models: Models) -> None:
            self.x, self.y = shard(index, devices)
            self.models = models

        def deserialize_training_input(self, global_model: list[float]) -> list[float]:
            return global_model

        def train_round(self, training_input: list[float] | None) -> np.ndarray:
            vector = train(training_input, self.x, self.y)
            self.models.trained(vector)
            return vector

        def serialize_training_result(self, training_result: np.ndarray) -> list[float]:
            return training_result.tolist()

        def on_new_global_model(self, global_model: list[float] | None) -> None:
            if global_model is not None:
                self.models.global_model(global_model)

    return Device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8081")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="stop after this many global models")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--wheel", action="store_true", help="use the original xaynet_sdk wheel")
    args = parser.parse_args()
    api = importlib.import_module("xaynet_sdk" if args.wheel else "xaynet.sdk")
    models = Models()
    device = device_class(api)
    participants = []
    for i in range(args.devices):
        scalar = len(shard(i, args.devices)[1]) / N_MAX  # n_i / N_MAX: in [0, 1]
        participants.append(
            api.spawn_participant(args.url, device, args=(i, args.devices, models), scalar=scalar)
        )
    deadline = time.monotonic() + args.timeout
    while len(models.seen) < args.rounds and time.monotonic() < deadline:
        time.sleep(0.2)
    for participant in participants:
        participant.stop()
    return 0 if len(models.seen) >= args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
