"""scikit-learn devices on xaynet's asyncio SDK: many participants on one event loop.

    python examples/sklearn/participant_asyncio.py --url http://127.0.0.1:8081 --devices 10 --rounds 3

A device fetches the global model when a round starts (`Events.new_round`) and hands the SDK
its locally trained model when it is selected for the update task (`model_provider`; returning
None means "not ready yet, ask again on the next tick").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import N_MAX, accuracy, shard, train

from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk import Events, Participant, PollSchedule
from xaynet.sdk.flatten import flatten


class Device:
    def __init__(self, index: int, devices: int, url: str, report: Callable[[np.ndarray], None]) -> None:
        self.x, self.y = shard(index, devices)
        self.report = report
        self.fetch: asyncio.Task[GlobalModel | None] | None = None
        self.participant = Participant(
            url,
            scalar=len(self.y) / N_MAX,  # n_i / N_MAX: the weight of this device's model, in [0, 1]
            events=Events(new_round=self.new_round),
            model_provider=self.local_model,
            schedule=PollSchedule(maximum=1.0),  # poll at least every second (the wheel: 10 s)
        )

    def new_round(self, params: RoundParameters) -> None:
        self.fetch = asyncio.get_running_loop().create_task(self.participant.global_model())

    def local_model(self, params: RoundParameters) -> np.ndarray | None:
        if self.fetch is None or not self.fetch.done():
            return None
        if self.fetch.exception() is not None:
            self.new_round(params)  # fetch again; the SDK asks on the next tick
            return None
        published = self.fetch.result()
        start = None if published is None else published.to_numpy(params.mask_config.vect.data_type)
        if start is not None:
            self.report(start)
        return train(start, self.x, self.y)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8081")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="stop after this many global models")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    seen: list[bytes] = []
    done = asyncio.Event()

    def report(vector: np.ndarray) -> None:
        if vector.tobytes() not in seen:
            seen.append(vector.tobytes())
            print(f"global model {len(seen)}: test accuracy {accuracy(vector):.1%}", flush=True)
            if len(seen) >= args.rounds:
                done.set()

    devices = [Device(i, args.devices, args.url, report) for i in range(args.devices)]
    first = train(None, devices[0].x, devices[0].y)
    print(f"local model: {flatten(first).advice(max_scalar=1.0)}", flush=True)  # which bound? (README)
    runs = [asyncio.create_task(d.participant.run(done)) for d in devices]
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        print(f"fewer than {args.rounds} global models in {args.timeout:g} s", flush=True)
    done.set()
    await asyncio.gather(*runs)
    return 0 if len(seen) >= args.rounds else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
