"""A global model as a ConfigMap: the bincode body in binaryData, round and checksum annotated."""

from __future__ import annotations

import base64
from typing import Any

from xaynet.operator.children.common import labels, model_configmap_name

MODEL_KEY = "model.bin"


def model_config_map(round_name: str, round_id: int, body: bytes, checksum: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": model_configmap_name(round_name),
            "labels": labels(round_name, "global-model"),
            "annotations": {"xaynet.dev/round": str(round_id), "xaynet.dev/checksum": checksum},
        },
        "data": {
            "round": str(round_id),
            "checksum": checksum,
            "format": "bincode Vec<Ratio<BigInt>> (XayNet /model)",
        },
        "binaryData": {MODEL_KEY: base64.b64encode(body).decode()},
    }
