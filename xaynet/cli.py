"""The `xaynet` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence


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


def _test_drive(args: argparse.Namespace) -> int:
    from xaynet.testdrive.driver import Options, run

    if args.participants < 4:
        print(
            "xaynet test-drive: at least 4 participants are needed (a round needs 3 updates and 1 sum)",
            file=sys.stderr,
        )
        return 2
    options = Options(
        participants=args.participants,
        rounds=args.rounds,
        model_length=args.model_length,
        url=args.url,
        max_message_size=None if args.max_message_size == 0 else args.max_message_size,
        stall_seconds=args.stall_seconds,
    )
    outcome = asyncio.run(run(options))
    return 0 if outcome.ok else 1


def _participant(args: argparse.Namespace) -> int:
    from xaynet.sdk.smoke import run_participant

    return asyncio.run(
        run_participant(
            args.url,
            rounds=args.rounds,
            model_file=args.model,
            scalar=args.scalar,
            seed=args.seed,
            give_up_after=args.give_up_after,
        )
    )


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from xaynet.operator import handlers  # registers the handlers

    if args.admission_port:
        handlers.enable_admission(args.admission_port)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or [],
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
    )
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
    drive = commands.add_parser(
        "test-drive", help="N participants complete private rounds; every global model is checked"
    )
    drive.add_argument(
        "-n", "--participants", type=int, default=10, help="number of participants (default 10)"
    )
    drive.add_argument("-r", "--rounds", type=int, default=3, help="rounds to complete (default 3)")
    drive.add_argument(
        "-l",
        "--model-length",
        type=int,
        default=4,
        help="weights per model (default 4; with -u the coordinator's)",
    )
    drive.add_argument(
        "-u", "--url", help="a running coordinator; default: start an embedded one (in-memory)"
    )
    drive.add_argument(
        "--max-message-size",
        type=int,
        default=3912,
        help="bytes per POST before chunking; 0 = unlimited (default 3912)",
    )
    drive.add_argument(
        "--stall-seconds", type=float, default=300.0, help="fail when no round completes this long"
    )
    drive.set_defaults(run=_test_drive)
    participant = commands.add_parser(
        "participant", help="run one participant against a coordinator (smoke test)"
    )
    participant.add_argument("-u", "--url", required=True, help="the coordinator's base URL")
    participant.add_argument(
        "--rounds", type=int, default=1, help="stop after this many new global models (0: never)"
    )
    participant.add_argument("--model", help=".npy or .json file with the local model (default: random)")
    participant.add_argument(
        "--scalar", type=float, default=1.0, help="aggregation weight of this participant"
    )
    participant.add_argument("--seed", type=int, help="seed of the random model")
    participant.add_argument(
        "--give-up-after",
        type=float,
        default=120.0,
        help="exit 1 when the coordinator is unusable this long (s)",
    )
    participant.set_defaults(run=_participant)
    operator = commands.add_parser(
        "operator", help="run the Kubernetes operator for FederatedRound resources"
    )
    scope = operator.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    operator.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0: off)")
    operator.add_argument(
        "--admission-port", type=int, default=0, help="serve the validating webhook here (0: off)"
    )
    operator.add_argument("-v", "--verbose", action="store_true")
    operator.set_defaults(run=_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
