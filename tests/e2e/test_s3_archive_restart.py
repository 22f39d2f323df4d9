"""An S3 endpoint down for several rounds, and the coordinator killed with SIGKILL meanwhile:
every global model still reaches the bucket once the endpoint is back (counted: none lost).

Real processes throughout: redis-server (AOF), `xaynet coordinator` with the original's `[s3]`
section, moto's S3 server started only after the rounds, on the port the config names.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.coordinator.rounds import LENGTH, complete_round, wait_phase
from tests.pet_client import PetClient
from tests.processes import coordinator_process, free_port, http_get, pet_config, redis_server, wait_until
from tests.s3server import s3_server


def test_endpoint_down_across_kill_9_loses_no_model(tmp_path: Path) -> None:
    export = tmp_path / "models"
    with redis_server(tmp_path, appendfsync="always") as redis, s3_server(start=False) as server:
        port = free_port()
        config = pet_config(
            LENGTH,
            port=port,
            redis_url=redis.url,
            export=export,
            sum_prob=0.5,
            times=(0, 0, 0),
            max_time=300,
            extra=server.toml(),
        )
        seeds: dict[int, bytes] = {}

        def one_round() -> None:
            wait_phase(coordinator, "sum")
            params = PetClient(coordinator.url).params()
            seeds[complete_round(coordinator)] = params.seed

        with coordinator_process(tmp_path, config, port) as coordinator:
            wait_until(lambda: http_get(coordinator.url + "/readyz")[0] == 200, 60, "the round restored")
            one_round()
            one_round()  # two rounds with the endpoint down
            archive = wait_until(
                lambda: (a := coordinator.status()["archive"])["pending"] == 2 and a["last_error"] and a,
                60,
                "two models queued behind the unreachable endpoint",
            )
            assert "cannot reach the S3 endpoint" in archive["last_error"]

            coordinator.kill(signal.SIGKILL)
            assert coordinator.process is not None and coordinator.process.returncode == -signal.SIGKILL
            coordinator.start()
            wait_until(
                lambda: http_get(coordinator.url + "/readyz")[0] == 200, 30, "the restarted coordinator"
            )
            one_round()  # a third, still down
            wait_until(lambda: coordinator.status()["archive"]["pending"] == 3, 60, "three models queued")

            server.start()  # the endpoint is back (an empty server: the bucket is created again)
            expected = {f"{r}_{seed.hex()}" for r, seed in seeds.items()}
            wait_until(lambda: set(server.objects()) == expected, 90, "every queued model uploaded")
            wait_until(lambda: coordinator.status()["archive"]["pending"] == 0, 30, "an empty queue")

            # what was uploaded last is known to a restarted coordinator too (the operator's pointer)
            last = max(seeds)
            coordinator.kill(signal.SIGKILL)
            coordinator.start()
            wait_until(lambda: http_get(coordinator.url + "/readyz")[0] == 200, 60, "the lease taken over")
            pointer = wait_until(lambda: coordinator.status()["archive"]["latest"], 30, "the archive pointer")
            assert pointer["uri"] == f"s3://global-models/{last}_{seeds[last].hex()}"
            assert pointer["round_id"] == last

        objects = server.objects()
        published = {int(path.stem.rsplit("-", 1)[1]) for path in export.glob("global-model-*.bin")}
        archived = {int(key.split("_", 1)[0]) for key in objects}
        lost = published - archived
        assert (len(published), lost) == (3, set())
        for round_id, seed in seeds.items():
            assert (
                objects[f"{round_id}_{seed.hex()}"]
                == (export / f"global-model-{round_id:08d}.bin").read_bytes()
            )
