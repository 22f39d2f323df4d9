"""Settings of the coordinator test-drive embeds (in-memory store, fast phases).

The probabilities aim at a handful of sum participants (each derives one mask per update, the
heaviest job) and every other participant updating; the minimum update count sits three
standard deviations below the expected number of updaters, so a round waits for nearly all
of them but is not failed by the lottery.
"""

from __future__ import annotations

import math

from xaynet.coordinator.settings import Settings
from xaynet.core.mask.config import BoundType
from xaynet.sdk.bounds import bound_name


def sum_probability(participants: int) -> float:
    return min(0.3, max(0.01, 5 / participants))


def embedded_settings(
    participants: int, model_length: int, port: int = 0, bound_type: BoundType = BoundType.B0
) -> Settings:
    p_sum = sum_probability(participants)
    expected_updates = participants * (1 - p_sum)
    spread = math.sqrt(participants * p_sum * (1 - p_sum))
    min_updates = max(3, math.floor(expected_updates - 3 * spread))
    patience = 10 + participants * model_length / 50_000  # seconds a phase may take at most
    # M3 aggregates up to 1,000 models; past that the next model type (M6: 10^6), so every
    # participant can count (a wider type costs more bytes per weight, so only when needed)
    model_type, capacity = ("M3", 1000) if participants <= 1000 else ("M6", 1_000_000)
    return Settings.model_validate(
        {
            "api": {"bind_address": f"127.0.0.1:{port}"},
            "pet": {
                "min_sum_count": 1,
                "max_sum_count": min(max(10, participants), capacity),
                "min_update_count": min_updates,
                "max_update_count": min(participants, capacity),
                "min_sum2_count": 1,
                "max_sum2_count": min(max(10, participants), capacity),
                "min_sum_time": 2.5,
                "max_sum_time": patience,
                "min_update_time": 0.5,
                "max_update_time": patience,
                "min_sum2_time": 0.5,
                "max_sum2_time": patience,
                "sum": p_sum,
                "update": 1.0,
            },
            "mask": {
                "group_type": "Prime",
                "data_type": "F32",
                "bound_type": bound_name(bound_type),
                "model_type": model_type,
            },
            "model": {"length": model_length},
            "log": {"filter": "warn"},
        }
    )
