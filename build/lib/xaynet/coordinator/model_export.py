"""Every global model, written to a directory the operator (or anyone) can publish from.

Files per round: `global-model-<round>.bin` (the `/model` bincode body) and `latest.json`
(round, checksum, size, file name). Writes go to a temporary name and are renamed, so a
reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class ModelExporter:
    def __init__(self, directory: Path, keep: int = 0) -> None:
        self.directory = directory
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True)

    def file_name(self, round_id: int) -> str:
        return f"global-model-{round_id:08d}.bin"

    def write(self, round_id: int, body: bytes, checksum: str) -> Path:
        target = self.directory / self.file_name(round_id)
        _atomic_write(target, body)
        latest = {
            "round": round_id,
            "checksum": f"sha256:{checksum}",
            "size": len(body),
            "file": target.name,
            "written_at": time.time(),
        }
        _atomic_write(self.directory / "latest.json", json.dumps(latest).encode())
        self._prune()
        return target

    def _prune(self) -> None:
        if not self.keep:
            return
        files = sorted(self.directory.glob("global-model-*.bin"))
        for old in files[: -self.keep]:
            old.unlink(missing_ok=True)


def _atomic_write(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
