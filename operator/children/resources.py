"""Default requests and limits of a round's pods, sized from `modelLength`.

    coordinator memory request = 128 MiB + 1 KiB x modelLength,  limit = 2 x request, cpu 250m
    redis memory request       =  64 MiB + 64 B x modelLength,   limit = 2 x request, cpu 100m

Why these numbers: the coordinator's peak RSS was 77 MB at 10,000 weights and 146 MB at
100,000 (benchmarks/RESULTS.md, "Rounds at scale"), i.e. ~70 MB plus ~0.8 KB per weight;
1 KiB per weight and a 128 MiB base leave headroom. Redis holds the aggregate and the masked
models not yet folded into it (~6 bytes per weight each with the default mask): 64 bytes per
weight is about ten of them. Limits are twice the requests because Redis forks to rewrite its
append-only file (copy-on-write) and the coordinator briefly holds a received message next to
the aggregate. No CPU limit: throttling only slows a phase down, the request reserves the share.
A round's `spec.coordinator.resources` / `spec.redis.resources` replace these defaults.
"""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024


def _memory(base_mib: int, bytes_per_weight: int, model_length: int) -> tuple[str, str]:
    request_mib = base_mib + -(-bytes_per_weight * model_length // MIB)  # rounded up
    return f"{request_mib}Mi", f"{2 * request_mib}Mi"


def coordinator_resources(model_length: int) -> dict[str, Any]:
    request, limit = _memory(128, 1024, model_length)
    return {"requests": {"cpu": "250m", "memory": request}, "limits": {"memory": limit}}


def redis_resources(model_length: int) -> dict[str, Any]:
    request, limit = _memory(64, 64, model_length)
    return {"requests": {"cpu": "100m", "memory": request}, "limits": {"memory": limit}}
