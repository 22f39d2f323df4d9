"""Run N participants of the reference wheel (`xaynet-sdk-python==0.1.0`) until stopped.

Usage: python wheel_driver.py URL FIRST COUNT TOTAL LENGTH OUT.json
Participant i (FIRST <= i < FIRST + COUNT) trains a model that says who it is: a head of
`LENGTH - TOTAL` values derived from i, then a one-hot tail of TOTAL entries with a 1 at i.
Every global model a participant receives is appended to OUT.json (rewritten each time).
Runs in its own process: the wheel holds the GIL while it ticks.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import xaynet_sdk

URL, FIRST, COUNT, TOTAL, LENGTH, OUT = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
LOCK = threading.Lock()
RECEIVED: dict[int, list[list[float]]] = {}


def local_model(index: int) -> list[float]:
    head = [((index * 7 + j * 3) % 11 - 5) / 8 for j in range(LENGTH - TOTAL)]
    return head + [1.0 if j == index else 0.0 for j in range(TOTAL)]


class Participant(xaynet_sdk.ParticipantABC):
    def __init__(self, index: int) -> None:
        self.index = index

    def train_round(self, training_input: object) -> list[float]:
        return local_model(self.index)

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result

    def deserialize_training_input(self, global_model: list) -> list:
        return global_model

    def on_new_global_model(self, global_model: list | None) -> None:
        if global_model is None:
            return
        with LOCK:
            RECEIVED.setdefault(self.index, []).append(list(global_model))
            with open(OUT, "w") as handle:
                json.dump(RECEIVED, handle)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The wheel's spawn_participant passes kwargs wrongly (a known defect): use args only.
    handles = [xaynet_sdk.spawn_participant(URL, Participant, args=(i,)) for i in range(FIRST, FIRST + COUNT)]
    while not stop.is_set():
        time.sleep(0.2)
    for handle in handles:
        handle.stop()


if __name__ == "__main__":
    main()
