"""`xaynet participant`: one participant with a random or file-loaded model, for smoke tests.

It prints one line per event (round, task, message answers, global models) and exits 0 after
the requested number of global models, 1 if the coordinator is unreachable or garbled.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from xaynet.core.bincode import RoundParameters
from xaynet.sdk.client import PostAnswer
from xaynet.sdk.errors import CoordinatorProtocolError, CoordinatorUnreachableError
from xaynet.sdk.participant import Events, Participant
from xaynet.sdk.tasks import Task


def load_model(path: str) -> Any:
    file = Path(path)
    if file.suffix == ".npy":
        return np.load(file)
    return json.loads(file.read_text())


async def run_participant(
    url: str,
    *,
    rounds: int = 1,
    model_file: str | None = None,
    scalar: float = 1.0,
    seed: int | None = None,
    give_up_after: float = 120.0,
) -> int:
    fixed = load_model(model_file) if model_file else None
    rng = np.random.default_rng(seed)
    stop = asyncio.Event()
    seen: list[str] = []

    def model(params: RoundParameters) -> Any:
        return fixed if fixed is not None else rng.uniform(-1, 1, params.model_length).astype(np.float32)

    def new_round(params: RoundParameters) -> None:
        print(f"new round: model length {params.model_length}, {params.mask_config.vect}", flush=True)

    def task(chosen: Task, _params: RoundParameters) -> None:
        print(f"task: {chosen.name.lower()}", flush=True)

    def sent(chosen: Task, answer: PostAnswer, size: int) -> None:
        verdict = answer.result or f"HTTP {answer.status}"
        print(
            f"sent {chosen.name.lower()} message ({size} bytes): {verdict} {answer.reason}".rstrip(),
            flush=True,
        )

    participant = Participant(
        url,
        scalar=scalar,
        events=Events(new_round=new_round, task=task, sent=sent),
        model_provider=model,
        give_up_after=give_up_after,
    )

    async def watch_models() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.5)
            if participant.new_global_model and participant.params is not None:
                global_model = await participant.global_model()
                if global_model is not None and global_model.checksum() not in seen:
                    seen.append(global_model.checksum())
                    print(
                        f"global model: {len(global_model)} weights, sha256:{global_model.checksum()}",
                        flush=True,
                    )
                    if rounds and len(seen) >= rounds:
                        stop.set()

    watcher = asyncio.create_task(watch_models())
    try:
        await participant.run(stop)
    except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
        print(f"error: {error.message}", flush=True)
        return 1
    finally:
        stop.set()
        await watcher
    return 0
