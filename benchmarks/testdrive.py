"""Rounds at scale: N participants (spread over `--workers` driver processes) against a
coordinator process.

For each N: wall time per round, SDK time per participant (mask + seal + sign, as measured
inside the participants while they share their driver's loop, and once more in isolation), and
the peak memory (VmHWM) of the coordinator and of the drivers, to show neither grows with
N × model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._timing import machine, median_seconds
from tests.processes import coordinator_process, free_port
from xaynet.coordinator.settings import Settings
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.message.envelope import encode_messages
from xaynet.sdk.tasks import compose_update
from xaynet.testdrive.driver import Options, run
from xaynet.testdrive.embedded import embedded_settings
from xaynet.testdrive.group import poll_maximum


def to_toml(settings: Settings, port: int) -> str:
    pet = settings.pet.model_dump()
    mask = settings.mask.model_dump()
    lines = ["[log]", 'filter = "warn"', "[api]", f'bind_address = "127.0.0.1:{port}"', "[pet]"]
    lines += [f"{k} = {v}" for k, v in pet.items()]
    lines += ["[mask]"] + [f'{k} = "{v}"' for k, v in mask.items()]
    lines += ["[model]", f"length = {settings.model.length}"]
    return "\n".join(lines) + "\n"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def isolated_sdk_ms(length: int, summers: int = 10) -> float:
    """One updater's mask + sign + seal on an otherwise idle loop (median of 15)."""
    keys = SigningKeyPair.generate()
    coordinator = EncryptKeyPair.generate()
    params = RoundParameters(
        coordinator.public, 0.01, 1.0, bytes(32), MaskConfigPair.same(DEFAULT_CONFIG), length
    )
    sums = {SigningKeyPair.generate().public: EncryptKeyPair.generate().public for _ in range(summers)}
    weights = np.random.default_rng(0).uniform(-1, 1, length).astype(np.float32)

    def work() -> None:
        payload = compose_update(keys, params, sums, weights)
        for plain in encode_messages(keys, params.pk, payload, 3912):
            seal(params.pk, plain)

    return median_seconds(work, 15) * 1e3


def bench(participants: int, length: int, rounds: int, workers: int = 1) -> dict[str, object]:
    settings = embedded_settings(participants, length, poll_maximum=poll_maximum(-(-participants // workers)))
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with coordinator_process(Path(tmp), to_toml(settings, port), port) as coordinator:
            assert coordinator.process is not None
            started = time.monotonic()
            outcome = asyncio.run(
                run(
                    Options(
                        participants=participants,
                        rounds=rounds,
                        model_length=length,
                        url=coordinator.url,
                        live=False,
                        workers=workers,
                    )
                )
            )
            wall = time.monotonic() - started
            peak = peak_rss_mb(coordinator.process.pid)
    per_round = [r.finished - r.started for r in outcome.completed if r.finished is not None]
    sdk = [s for r in outcome.completed for s in r.sdk_seconds["update"].values()]
    return {
        "n": participants,
        "length": length,
        "rounds": len(outcome.completed),
        "ok": outcome.ok,
        "round_s": statistics.median(per_round) if per_round else float("nan"),
        "sdk_ms_loaded": statistics.median(sdk) * 1e3 if sdk else float("nan"),
        "updates": statistics.median([r.counts.get("update", 0) for r in outcome.completed])
        if outcome.completed
        else 0,
        "peak_mb": peak,
        "drivers_mb": max(
            [v for v in outcome.peak_rss_mb.get("drivers") or [] if v is not None]
            + [outcome.peak_rss_mb.get("test_drive") or 0.0]
        ),
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks testdrive", description=__doc__)
    parser.add_argument("-n", "--participants", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("-l", "--model-length", type=int, default=10_000)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("-w", "--workers", type=int, default=1, help="driver processes")
    args = parser.parse_args(argv)
    results = [bench(n, args.model_length, args.rounds, args.workers) for n in args.participants]
    isolated = isolated_sdk_ms(args.model_length)
    table = Table(
        title=f"test-drive at scale: {args.model_length:,} weights, {args.workers} driver(s), "
        "Prime/F32/B0 (M3; M6 past 1,000), multipart 3912 B"
    )
    for column in (
        "participants",
        "rounds ok",
        "updates/round",
        "s per round",
        "SDK ms/updater (loaded)",
        "coordinator peak MB",
        "largest driver peak MB",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r["n"]),
            f"{r['rounds']} {'ok' if r['ok'] else 'FAILED'}",
            f"{r['updates']:.0f}",
            f"{r['round_s']:.1f}",
            f"{r['sdk_ms_loaded']:.1f}",
            f"{r['peak_mb']:.0f}",
            f"{r['drivers_mb']:.0f}",
        )
    Console(width=140).print(table)
    print(
        f"SDK time per updater in isolation (mask + sign + seal, {args.model_length:,} weights): "
        f"{isolated:.1f} ms"
    )
    print(f"machine: {machine()}")
