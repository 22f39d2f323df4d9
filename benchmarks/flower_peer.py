"""One Flower SecAgg+ round, Flower's own code unmodified: the peer `python -m benchmarks round` compares.

Server: `SecAggPlusWorkflow` (flwr's SecAgg+ server side) with a `FedAvg` strategy. Clients:
`ClientApp(mods=[secaggplus_mod])` (flwr's SecAgg+ client side), each answering `fit` with a
fixed float32 vector of L weights and the same example count (so FedAvg's weighted mean is the
plain mean).
Between them runs `LoopbackGrid`, our implementation of flwr's `Grid` interface: every message is
serialised to protobuf bytes and parsed back on each way, as a SuperLink would, and handled by
the destination client at once, one client after another in this process (no network, no
threads) — the setting of the peer figures in `/work/shared/peers/flower.md`.

What is timed (seconds, this process, perf_counter):
* client mask: per client, its `collect_masked_vectors` stage (quantise, add pairwise and
  private masks, decrypt the forwarded shares), minus the client's own `fit` (making the vector
  is not masking); median over the clients.
* client total: per client, all four SecAgg+ stages (same `fit` excluded); median.
* server: the whole round minus every client call and every (de)serialisation.
* whole round: `SecAggPlusWorkflow(grid, context)` from the setup stage to the unmasked
  aggregate being stored, everything included; also its CPU seconds (`time.process_time`),
  which a busy shared machine inflates less than the wall time.

Run alone: `python -m benchmarks.flower_peer -n 100 -l 100000 -k 3 11` (needs the `flower` extra).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Every client's example count: Flower's default `max_weight`, so that SecAgg+ scales the weights by
#: 1 before quantising (with a count of 1 it scales them by 1/1000 and loses three digits).
EXAMPLES = 1000

#: The peer's reconstruction thresholds: Flower's example (3 shares, 2 to rebuild) and k = 11.
THRESHOLDS = {3: 2, 11: 6}


def available() -> bool:
    """Whether flwr imports here (the optional `flower` extra)."""
    try:
        import flwr.server.workflow  # noqa: F401
    except ImportError:
        return False
    return True


def threshold_for(num_shares: int) -> int:
    """The peer doc's threshold for k shares; otherwise a majority of the k shares."""
    return THRESHOLDS.get(num_shares, num_shares // 2 + 1)


Vector = npt.NDArray[np.float32]


def client_vector(index: int, length: int) -> Vector:
    """Client `index`'s fixed weights: uniform in [-1, 1), well inside Flower's clipping range 8."""
    rng = np.random.default_rng(index)
    return rng.uniform(-1.0, 1.0, length).astype(np.float32)


@dataclass(frozen=True)
class FlowerRound:
    participants: int
    length: int
    num_shares: int
    threshold: int
    client_mask_seconds: float
    client_seconds: float
    server_seconds: float
    serialise_seconds: float
    whole_seconds: float
    cpu_seconds: float  # this process's CPU over the whole round (all threads)
    max_error: float
    tolerance: float

    @property
    def correct(self) -> bool:
        return self.max_error <= self.tolerance


def run_round(participants: int, length: int, num_shares: int, threshold: int | None = None) -> FlowerRound:
    """One SecAgg+ round of `participants` clients; checks the aggregate against the plain mean."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import NDArrays, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.compat.common import recorddict_compat as compat
    from flwr.proto.message_pb2 import Message as ProtoMessage
    from flwr.server import ServerConfig, SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.serverapp.grid import Grid
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.WARNING)  # the workflow logs every stage at INFO
    threshold = threshold_for(num_shares) if threshold is None else threshold
    run_id = 1
    # What flwr's own ServerApp runner sets before the workflow builds messages.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID
    node_ids = [1_000 + index for index in range(participants)]  # 1 is the SuperLink's id
    fit_seconds: dict[int, float] = defaultdict(float)
    expected = np.zeros(length, np.float64)  # running sum: memory O(L), not O(N·L)

    class FixedVectorClient(NumPyClient):
        def __init__(self, node_id: int) -> None:
            self.node_id = node_id

        def fit(
            self, parameters: NDArrays, config: dict[str, Scalar]
        ) -> tuple[NDArrays, int, dict[str, Scalar]]:
            started = time.perf_counter()
            weights = client_vector(self.node_id, length)
            expected.__iadd__(weights)
            fit_seconds[self.node_id] += time.perf_counter() - started
            return [weights], EXAMPLES, {}

    app = ClientApp(
        client_fn=lambda context: FixedVectorClient(context.node_id).to_client(), mods=[secaggplus_mod]
    )
    contexts = {nid: Context(run_id, nid, {}, RecordDict(), {}) for nid in node_ids}
    stage_seconds: dict[str, dict[int, float]] = defaultdict(dict)
    serialise = [0.0]
    client_calls = [0.0]

    def wire(message: Message) -> Message:
        """Through protobuf bytes and back, as to and from a SuperLink."""
        started = time.perf_counter()
        copy = message_from_proto(ProtoMessage.FromString(message_to_proto(message).SerializeToString()))
        serialise[0] += time.perf_counter() - started
        return copy

    class LoopbackGrid(Grid):
        """flwr's Grid interface over direct calls: each pushed message is answered at once."""

        def __init__(self) -> None:
            self._run = Run.create_empty(run_id)
            self._replies: dict[str, Message] = {}

        def set_run(self, run: Run) -> None:
            self._run = run

        @property
        def run(self) -> Run:
            return self._run

        def create_message(
            self,
            content: RecordDict,
            message_type: str,
            dst_node_id: int,
            group_id: str,
            ttl: float | None = None,
        ) -> Message:
            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(node_ids)

        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            ids = []
            for message in messages:
                message.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # as flwr's InMemoryGrid
                delivered = wire(message)
                nid = delivered.metadata.dst_node_id
                stage = str(delivered.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
                fit_before = fit_seconds[nid]
                started = time.perf_counter()
                reply = app(delivered, contexts[nid])
                spent = time.perf_counter() - started
                client_calls[0] += spent
                stage_seconds[stage][nid] = spent - (fit_seconds[nid] - fit_before)
                reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
                self._replies[message.metadata.message_id] = wire(reply)
                ids.append(message.metadata.message_id)
            return ids

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
            return [self._replies.pop(i) for i in message_ids if i in self._replies]

        def send_and_receive(
            self, messages: Iterable[Message], *, timeout: float | None = None
        ) -> Iterable[Message]:
            return list(self.pull_messages(self.push_messages(messages)))

    grid = LoopbackGrid()
    manager = SimpleClientManager()
    for nid in node_ids:
        manager.register(GridClientProxy(nid, grid, run_id))
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=participants,
        min_available_clients=participants,
        fit_metrics_aggregation_fn=lambda metrics: {},  # no metrics: silences its warning
    )
    context = LegacyContext(
        Context(run_id, 0, {}, RecordDict(), {}), ServerConfig(num_rounds=1), strategy, manager
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    initial = ndarrays_to_parameters([np.zeros(length, np.float32)])
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(initial, True)
    workflow = SecAggPlusWorkflow(num_shares, threshold)

    started, cpu_started = time.perf_counter(), time.process_time()
    workflow(grid, context)
    whole, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    record: ArrayRecord = context.state.array_records[MAIN_PARAMS_RECORD]
    (aggregate,) = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, True))
    if len(fit_seconds) != participants:
        raise RuntimeError(f"Flower aggregated {len(fit_seconds)} of {participants} clients")
    max_error = float(np.max(np.abs(aggregate.astype(np.float64) - expected / participants)))
    per_client: dict[int, float] = defaultdict(float)
    for spent in stage_seconds.values():
        for nid, seconds in spent.items():
            per_client[nid] += seconds
    return FlowerRound(
        participants=participants,
        length=length,
        num_shares=num_shares,
        threshold=threshold,
        client_mask_seconds=statistics.median(stage_seconds["collect_masked_vectors"].values()),
        client_seconds=statistics.median(per_client.values()),
        server_seconds=whole - client_calls[0] - serialise[0],
        serialise_seconds=serialise[0],
        whole_seconds=whole,
        cpu_seconds=cpu,
        max_error=max_error,
        # one quantisation step of Flower's defaults: 2 · clipping 8 / quantisation range 2^22
        tolerance=2 * 8.0 / 4194304,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flower_peer", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("-n", "--participants", type=int, default=100)
    parser.add_argument("-l", "--length", type=int, default=100_000)
    parser.add_argument("-k", "--num-shares", type=int, nargs="+", default=[3, 11])
    args = parser.parse_args(argv)
    if not available():
        raise SystemExit("flwr is not installed: pip install -e '.[flower]'")
    for k in args.num_shares:
        result = run_round(args.participants, args.length, k)
        print(
            f"Flower SecAgg+ N={result.participants} L={result.length} k={k} t={result.threshold}: "
            f"client mask {result.client_mask_seconds * 1e3:.1f} ms, client total "
            f"{result.client_seconds * 1e3:.1f} ms, server {result.server_seconds:.2f} s, "
            f"serialisation {result.serialise_seconds:.2f} s, whole round {result.whole_seconds:.2f} s, "
            f"max error {result.max_error:.2e} (tolerance {result.tolerance:.2e}): "
            f"{'correct' if result.correct else 'WRONG'}"
        )


if __name__ == "__main__":
    main()
