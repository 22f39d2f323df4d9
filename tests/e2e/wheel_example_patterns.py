"""The ways the original wheel's getting-started examples use `xaynet_sdk`, in one process.

Usage: python wheel_example_patterns.py URL OUT.json

XayNet v0.11.0 ships examples that a migrating user runs unchanged against the original
`configs/config.toml`: a `ParticipantABC` (hello world, several in one process, one that
only trains when `participate_in_update_task` says so), one that only downloads global
models, an `AsyncParticipant` driven by its notifier (`get_global_model`/`set_local_model`),
and saving/restoring an `AsyncParticipant`'s state as JSON. This driver uses each of these
API paths (our own code, none of theirs) and writes what each received to OUT.json.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import xaynet_sdk

URL, OUT = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()
RESULT: dict[str, object] = {"download_only": [], "async": [], "restored": False}
MODEL = [0.125, -0.25, 0.375, 0.5]


def record(key: str, value: object) -> None:
    with LOCK:
        entry = RESULT[key]
        if isinstance(entry, list):
            entry.append(value)
        else:
            RESULT[key] = value
        with open(OUT, "w") as handle:
            json.dump(RESULT, handle)


class DownloadOnly(xaynet_sdk.ParticipantABC):
    """Never updates (participate_in_update_task is False): it only fetches global models."""

    def deserialize_training_input(self, global_model: list) -> list:
        return global_model

    def train_round(self, training_input: object) -> list[float]:
        raise AssertionError("a download-only participant is never asked to train")

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result

    def participate_in_update_task(self) -> bool:
        return False

    def on_new_global_model(self, global_model: list | None) -> None:
        if global_model is not None:
            record("download_only", list(global_model))


def restore_round_trip() -> None:
    """Spawn, stop (the state comes back), serialise it as JSON, restore from it, stop."""
    participant, _ = xaynet_sdk.spawn_async_participant(URL, None)
    state = participant.stop()
    restored, _ = xaynet_sdk.spawn_async_participant(URL, json.loads(json.dumps(state)))
    restored.stop()
    record("restored", True)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    restore_round_trip()
    download_only = xaynet_sdk.spawn_participant(URL, DownloadOnly)
    participant, notifier = xaynet_sdk.spawn_async_participant(URL)
    while not stop.is_set():
        if notifier.wait(0.2):
            model = participant.get_global_model()
            if model is not None:
                record("async", list(model))
            participant.set_local_model(MODEL)
    participant.stop()
    download_only.stop()


if __name__ == "__main__":
    main()
