"""Structured logs: one JSON object per line (or plain text), level from the original filter.

The original's `[log] filter` is a tracing directive list such as
`"xaynet=debug,http=warn,info"`; we honour the `xaynet=<level>` directive, else the bare
default level.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def level_from_filter(directives: str) -> int:
    default = logging.INFO
    for directive in (d.strip() for d in directives.split(",") if d.strip()):
        target, _, level = directive.rpartition("=")
        value = _LEVELS.get(level.lower())
        if value is None:
            continue
        if target in ("", "xaynet") or target.startswith("xaynet"):
            if target:
                return value
            default = value
    return default


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(directives: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("xaynet")
    root.handlers[:] = [handler]
    root.setLevel(level_from_filter(directives))
    root.propagate = False
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
