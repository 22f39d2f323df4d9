"""`xaynet participant`: one participant with a random or file-loaded model, for smoke tests.

It prints one line per event (round, task, message answers, global models) and exits 0 after
the requested number of global models, 1 if the coordinator is unreachable or garbled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from xaynet.core.bincode import RoundParameters
from xaynet.sdk.client import CoordinatorClient, PostAnswer
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
    sum_messages_sent = 0  # a sum participant's first message is "sum", its second "sum2"

    def model(params: RoundParameters) -> Any:
        return fixed if fixed is not None else rng.uniform(-1, 1, params.model_length).astype(np.float32)

    def new_round(params: RoundParameters) -> None:
        nonlocal sum_messages_sent
        sum_messages_sent = 0
        print(f"new round: model length {params.model_length}, {params.mask_config.vect}", flush=True)

    def task(chosen: Task, _params: RoundParameters) -> None:
        print(f"task: {chosen.name.lower()}", flush=True)

    def sent(chosen: Task, answer: PostAnswer, size: int) -> None:
        nonlocal sum_messages_sent
        name = chosen.name.lower()
        if chosen is Task.SUM and answer.result != "buffered":  # a chunk of a longer message
            sum_messages_sent += 1
            name = "sum" if sum_messages_sent == 1 else "sum2"
        verdict = answer.result or f"HTTP {answer.status}"
        print(f"sent {name} message ({size} bytes): {verdict} {answer.reason}".rstrip(), flush=True)

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
    print(f"waiting for the coordinator at {url} (giving up after {give_up_after:g} s)", flush=True)
    announcer = asyncio.create_task(_announce_trouble(participant, url, give_up_after, stop))
    try:
        await participant.run(stop)
    except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
        print(f"error: {error.message}", flush=True)
        return 1
    finally:
        stop.set()
        await watcher
        announcer.cancel()
    return 0


async def _announce_trouble(
    participant: Participant, url: str, give_up_after: float, stop: asyncio.Event
) -> None:
    """Say why nothing happens while the coordinator does not answer (instead of silence)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        probe = CoordinatorClient(url, session, attempts=1, timeout=5.0)
        while not stop.is_set() and participant.params is None:
            try:
                await probe.params()
                return
            except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
                left = max(0.0, give_up_after - (loop.time() - started))
                print(f"no answer from {url} yet ({error.message}); giving up in {left:.0f} s", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(10.0, max(1.0, give_up_after / 4)))
