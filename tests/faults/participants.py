"""Run participants of one kind — the reference wheel or our SDK — until SIGTERM.

Usage: python -m tests.faults.participants {wheel,sdk} PROXY_URL FIRST COUNT HEAD TOTAL OUT.json

Participant i (FIRST <= i < FIRST + COUNT) talks to `PROXY_URL/<kind-letter><i>` (so the
recording proxy knows who sent what) and trains `tests.models.local_model(i, HEAD, TOTAL)`: a
head derived from i and a one-hot tail naming i, so every global model says whom it
aggregated. Our SDK's participants keep the default maximum message size (3,912 bytes), so
their updates and masks are multipart; the wheel always sends single-part messages.
On exit, OUT.json gets the participants that stopped with an error (gave up) and why.
Runs in its own process: the wheel holds the GIL while it ticks.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tests.models import local_model


def sender_name(kind: str, index: int) -> str:
    return f"{kind[0]}{index}"


def main(argv: list[str]) -> None:
    kind, url = argv[0], argv[1].rstrip("/")
    first, count, head, total = map(int, argv[2:6])
    out = Path(argv[6])
    if kind == "wheel":
        import xaynet_sdk as sdk
    else:
        from xaynet import sdk

    class Trainer(sdk.ParticipantABC):  # type: ignore[misc]
        def __init__(self, index: int) -> None:
            self.index = index

        def train_round(self, training_input: object) -> list[float]:
            return local_model(self.index, head, total)

        def serialize_training_result(self, training_result: list[float]) -> list[float]:
            return training_result

        def deserialize_training_input(self, global_model: list[Any]) -> list[Any]:
            return global_model

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The wheel's spawn_participant passes kwargs wrongly (a known defect): args only.
    handles = {
        i: sdk.spawn_participant(f"{url}/{sender_name(kind, i)}", Trainer, args=(i,))
        for i in range(first, first + count)
    }
    stop.wait()
    # Stop them all at once: each stop waits for its participant's running tick.
    stoppers = [threading.Thread(target=handle.stop) for handle in handles.values()]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(60)
    errors: dict[str, str] = {}
    for i, handle in handles.items():
        error = getattr(handle, "error", None)  # our SDK: why a participant gave up
        if error is not None:
            errors[sender_name(kind, i)] = f"{type(error).__name__}: {error}"
    out.write_text(json.dumps({"errors": errors}))
    os._exit(0)  # the wheel's threads may still sleep out their poll interval


if __name__ == "__main__":
    main(sys.argv[1:])
