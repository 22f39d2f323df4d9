"""A PyTorch device: a small MLP on its digits shard, federated through xaynet's asyncio SDK.

    pip install 'xaynet[examples,torch]'
    xaynet coordinator -c examples/torch/coordinator.toml
    python examples/torch/participant.py --url http://127.0.0.1:8081 --devices 10 --rounds 3

The model's `state_dict()` becomes the round's flat vector with `xaynet.sdk.flatten` and the
global model goes back into it with `unflatten` + `load_state_dict` (same names, shapes, dtypes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / "sklearn"))
from common import N_MAX, shard, test_set

from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk import Events, Participant, PollSchedule
from xaynet.sdk.flatten import flatten, unflatten

torch.manual_seed(0)


def new_net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # 2,410 weights


LAYOUT = flatten(new_net().state_dict()).layout
INITIAL = flatten(new_net().state_dict()).vector  # every device starts from the same weights


def train(start: np.ndarray, x: np.ndarray, y: np.ndarray, epochs: int = 5) -> np.ndarray:
    net = new_net()
    net.load_state_dict(unflatten(start, LAYOUT))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    features, labels = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels)).split(16):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(features[batch]), labels[batch]).backward()
            optimizer.step()
    return flatten(net.state_dict()).vector


def accuracy(vector: np.ndarray) -> float:
    net = new_net()
    net.load_state_dict(unflatten(vector, LAYOUT))
    x, y = test_set()
    with torch.no_grad():
        return float((net(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean())


class Device:
    def __init__(  # noqa: PLR0917 - an example: plain positional arguments
        self, index: int, devices: int, url: str, seen: list[bytes], done: asyncio.Event, rounds: int
    ):
        self.x, self.y = shard(index, devices)
        self.seen, self.done, self.rounds = seen, done, rounds
        self.fetch: asyncio.Task[GlobalModel | None] | None = None
        self.participant = Participant(
            url,
            scalar=len(self.y) / N_MAX,
            events=Events(new_round=self.new_round),
            model_provider=self.local_model,
            schedule=PollSchedule(maximum=1.0),
        )

    def new_round(self, params: RoundParameters) -> None:
        self.fetch = asyncio.get_running_loop().create_task(self.participant.global_model())

    def local_model(self, params: RoundParameters) -> np.ndarray | None:
        if self.fetch is None or not self.fetch.done():
            return None
        if self.fetch.exception() is not None:
            self.new_round(params)
            return None
        published = self.fetch.result()
        start = INITIAL if published is None else published.to_numpy(params.mask_config.vect.data_type)
        if published is not None and start.tobytes() not in self.seen:
            self.seen.append(start.tobytes())
            print(f"global model {len(self.seen)}: test accuracy {accuracy(start):.1%}", flush=True)
            if len(self.seen) >= self.rounds:
                self.done.set()
        return train(start, self.x, self.y)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8081")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    seen: list[bytes] = []
    done = asyncio.Event()
    devices = [Device(i, args.devices, args.url, seen, done, args.rounds) for i in range(args.devices)]
    print(
        f"model: {LAYOUT.size} weights; {flatten(new_net().state_dict()).advice(max_scalar=1.0)}", flush=True
    )
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
