"""The `xaynet` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence


def _coordinator(args: argparse.Namespace) -> int:
    from xaynet.coordinator import logs
    from xaynet.coordinator.service import serve_forever
    from xaynet.coordinator.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(f"xaynet coordinator: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log.filter, settings.log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xaynet", description="Private federated learning with the XayNet PET protocol."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    coordinator = commands.add_parser("coordinator", help="run a coordinator (the PET round service)")
    coordinator.add_argument(
        "-c", "--config", help="config.toml (the original format); env XAYNET_SECTION__KEY overrides"
    )
    coordinator.set_defaults(run=_coordinator)
    for register in _EXTENSIONS:
        register(commands)
    return parser


_EXTENSIONS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
