"""The `xaynet` command: one entry point, a subcommand per job.

Errors a user can fix are one or two lines on stderr, never a traceback (`-v` shows it):
exit 2 for usage and settings mistakes, 1 for runtime failures, 130 after Ctrl-C (143 after
SIGTERM where a command handles it: test-drive).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn
from urllib.parse import urlsplit

EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


class UsageError(Exception):
    """A mistake in the command line or the settings: exit 2 with this message."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix instead of the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in every --help, without "(default: None)" noise."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def coordinator_url(value: str) -> str:
    """An http(s) base URL; `127.0.0.1:8081` (no scheme) gets a hint instead of a traceback."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        if "://" not in value:
            raise argparse.ArgumentTypeError(f"{value!r} has no scheme: use http://{value}")
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL")
    return value


def _coordinator(args: argparse.Namespace) -> int:
    from xaynet.coordinator import event_loop, logs
    from xaynet.coordinator.service import serve_forever
    from xaynet.coordinator.settings import SettingsError, load_settings

    if args.config is None:
        raise UsageError("no settings file: pass -c FILE (for example -c configs/config.toml)")
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    logs.configure(settings.log.filter, settings.log.format)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            event_loop.run(serve_forever(settings))
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            reason = {
                errno.EADDRINUSE: "the address is already in use (another coordinator?)",
                errno.EADDRNOTAVAIL: "no interface of this machine has that address",
                errno.EACCES: "permission denied (ports below 1024 need privileges)",
            }[error.errno]
            raise RuntimeError(
                f"cannot listen on {settings.api.bind_address}: {reason}; stop the other process or "
                "choose another [api] bind_address (or XAYNET_API__BIND_ADDRESS)"
            ) from error
        raise
    return 0


def _test_drive(args: argparse.Namespace) -> int:
    from xaynet.testdrive.driver import Options, run
    from xaynet.testdrive.embedded import PHASE_MINIMUMS, EmbeddedSettingsError, embedded_settings

    if args.participants < 4:
        raise UsageError("at least 4 participants are needed (a round needs 3 updates and 1 sum)")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    minimums = {k: getattr(args, k) for k in PHASE_MINIMUMS if getattr(args, k) is not None}
    if minimums and args.url:
        given = ", ".join("--" + k.replace("_", "-") for k in minimums)
        raise UsageError(
            f"{given} set the embedded coordinator's phases; with -u, set them in its [pet] settings"
        )
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if args.task != "random":
        workers = 1  # a learning task's data and shards live in this process
    try:
        embedded_settings(  # checked here: a bad N or minimum is one line, exit 2
            args.participants, max(1, args.model_length), minimums=minimums
        )
    except EmbeddedSettingsError as error:
        raise UsageError(str(error)) from None
    stall = args.stall_seconds
    if stall is None:  # progress is any accepted message; a Sum2 derivation at scale has none for long
        stall = max(300.0, args.participants * max(1, args.model_length) / 2_000_000)
    options = Options(
        participants=args.participants,
        rounds=args.rounds,
        model_length=args.model_length,
        url=args.url,
        max_message_size=None if args.max_message_size == 0 else args.max_message_size,
        stall_seconds=stall,
        workload=_workload(args),
        plot=args.plot,
        workers=workers,
        minimums=minimums,
        json_path=args.json,
    )
    outcome = asyncio.run(run(options))
    return 0 if outcome.ok else 1


def _workload(args: argparse.Namespace) -> Any:
    """The learning task's data, shards and baseline, prepared before any round (errors: exit 2)."""
    from xaynet.testdrive.learning import MissingExtraError
    from xaynet.testdrive.plot import require_matplotlib
    from xaynet.testdrive.workloads import make_workload

    if args.plot and args.task == "random":
        raise UsageError("--plot draws accuracy per round: add --task digits")
    try:
        if args.plot:
            require_matplotlib()
        return make_workload(args.task, args.participants)
    except (MissingExtraError, ValueError) as error:
        raise UsageError(str(error)) from None


def _participant(args: argparse.Namespace) -> int:
    from xaynet.sdk.smoke import load_model, run_participant

    if args.model is not None:
        try:
            load_model(args.model)
        except (OSError, ValueError) as error:
            raise UsageError(f"--model {args.model}: {getattr(error, 'strerror', None) or error}") from None
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
    from xaynet.operator.run import Options, run

    return run(
        Options(
            namespaces=args.namespace or [],
            all_namespaces=args.all_namespaces,
            liveness_port=args.liveness_port,
            metrics_port=args.metrics_port,
            lease_namespace=args.lease_namespace,
            lease_name=args.lease_name,
            lease_duration=args.lease_duration,
            verbose=args.verbose,
        )
    )


def _model_get(args: argparse.Namespace) -> int:
    from xaynet.sdk.model_files import ModelSourceError, get_model

    try:
        lines = get_model(
            args.source,
            output=args.output,
            fmt=args.format,
            data_type=args.data_type,
            s3_endpoint=args.s3_endpoint,
        )
    except ModelSourceError as error:
        print(f"xaynet model get: {error}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME
    print("\n".join(lines), file=sys.stderr if args.output == "-" else sys.stdout, flush=True)
    return 0


def _version() -> str:
    try:
        return metadata.version("xaynet")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _command(
    commands: argparse._SubParsersAction[_Parser], name: str, summary: str, description: str
) -> _Parser:
    command = commands.add_parser(name, help=summary, description=description, formatter_class=_Help)
    # Also after the subcommand (`xaynet coordinator -v`); SUPPRESS keeps a `xaynet -v` given before it.
    command.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xaynet",
        description="Private federated learning with the XayNet PET protocol.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"xaynet {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    coordinator = _command(
        commands,
        "coordinator",
        "run a coordinator (the PET round service)",
        "Run a coordinator: serves the PET protocol over HTTP and runs rounds. Settings come from a "
        "config.toml in the original XayNet v0.11.0 format (see configs/), overridden by environment "
        "variables XAYNET_SECTION__KEY.",
    )
    coordinator.add_argument("-c", "--config", metavar="FILE", help="config.toml (required)")
    coordinator.set_defaults(run=_coordinator)

    drive = _command(
        commands,
        "test-drive",
        "N participants complete private rounds; every global model is checked",
        "Run N participants against an embedded (or a running) coordinator and check that every "
        "global model equals the mean of the models its round aggregated (weighted by the "
        "participants' scalars with --task digits, which also reports test accuracy per round).",
    )
    drive.add_argument("-n", "--participants", type=int, default=10, help="number of participants")
    drive.add_argument("-r", "--rounds", type=int, default=3, help="rounds to complete")
    drive.add_argument(
        "-l", "--model-length", type=int, default=4, help="weights per model (with -u: the coordinator's)"
    )
    drive.add_argument(
        "-u",
        "--url",
        type=coordinator_url,
        help="a running coordinator (default: start an embedded one, in-memory)",
    )
    drive.add_argument(
        "--max-message-size", type=int, default=3912, help="bytes per POST before chunking; 0 = unlimited"
    )
    drive.add_argument(
        "--stall-seconds",
        type=float,
        help="fail after this long without progress (no phase change and no accepted message, or "
        "the coordinator unreachable); default: 300, more for N × model length above 6·10^8 (a "
        "long Sum2 derivation accepts nothing for a while)",
    )
    drive.add_argument(
        "--task",
        choices=("random", "digits"),
        default="random",
        help="random: uniform vectors, checked against their mean; digits: train a classifier on "
        "non-IID shards of scikit-learn's digits, weighted by sample count, with test accuracy per "
        "round beside a centrally trained baseline (needs xaynet[examples]; 650 weights, bound B2)",
    )
    drive.add_argument("--plot", metavar="FILE.png", help="with --task digits: write accuracy per round")
    drive.add_argument(
        "-w",
        "--workers",
        type=int,
        help="driver processes the participants are spread over (default: this machine's cores); "
        "with more than one, the embedded coordinator runs in a process of its own too. --task "
        "digits always runs in one process",
    )
    drive.add_argument(
        "--json",
        metavar="FILE",
        help="write a summary as one JSON object: ok, participants, workers, model_length, "
        "wall_seconds, stalled, interrupted, refused, died, failed_rounds, peak_rss_mb {coordinator, "
        "drivers, test_drive} (MB, or a word when not measured), and per round: round_id, verdict, "
        "max_error, tolerance, phase_seconds, accepted (per phase, the coordinator's counts), "
        "selected, updates_known_accepted, dropped (work stopped after its phase ended), bytes_sent, "
        "seconds",
    )
    minimums = drive.add_argument_group(
        "phase minimums of the embedded coordinator (printed at start; not with -u)"
    )
    for phase, seconds in (
        ("sum", "2.5, more past 2,000 participants per driver"),
        ("update", "0.5"),
        ("sum2", "0.5"),
    ):
        minimums.add_argument(
            f"--min-{phase}-time",
            type=float,
            metavar="S",
            help=f"seconds the {phase} phase lasts at least (default: {seconds})",
        )
    for phase, count in (
        ("sum", "1"),
        ("update", "3 standard deviations below the expected updaters"),
        ("sum2", "1"),
    ):
        minimums.add_argument(
            f"--min-{phase}-count",
            type=int,
            metavar="N",
            help=f"{phase} messages the phase waits for (default: {count})",
        )
    drive.set_defaults(run=_test_drive)

    participant = _command(
        commands,
        "participant",
        "run one participant against a coordinator (smoke test)",
        "Run one participant with a random or file-loaded model; prints one line per event and exits "
        "0 after --rounds global models, 1 when the coordinator stays unusable for --give-up-after.",
    )
    participant.add_argument(
        "-u",
        "--url",
        required=True,
        type=coordinator_url,
        help="the coordinator's base URL, e.g. http://host:8081",
    )
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
        help="exit 1 when the coordinator is unreachable or unusable this long (seconds)",
    )
    participant.set_defaults(run=_participant)

    operator = _command(
        commands,
        "operator",
        "run the Kubernetes operator for FederatedRound resources",
        "Run the Kubernetes operator: one coordinator per FederatedRound resource.",
    )
    scope = operator.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    operator.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0: off)")
    operator.add_argument(
        "--metrics-port", type=int, default=8090, help="serve the operator's /metrics here (0: off)"
    )
    operator.add_argument(
        "--lease-namespace", help="namespace of the leader Lease (default: the operator's own)"
    )
    operator.add_argument("--lease-name", default="xaynet-operator", help="name of the leader Lease")
    operator.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        help="seconds without renewal before a standby replica takes over (default 15)",
    )
    operator.set_defaults(run=_operator)

    model = _command(
        commands, "model", "read published global models", "Read, check and convert global models."
    )
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    get = _command(
        model_commands,
        "get",
        "fetch a global model, check its checksum, write it as .npy, JSON or raw float32",
        "Fetch a global model from a coordinator URL (GET /model), an s3://BUCKET/KEY object, a "
        "ConfigMap dump (kubectl get configmap NAME -o yaml), a model file (the /model bincode), or "
        "- (stdin); check its checksum against what the source publishes; print round, length and "
        "mask config; write the weights as the original client reads them. S3 credentials: "
        "XAYNET_S3__ACCESS_KEY / XAYNET_S3__SECRET_ACCESS_KEY / XAYNET_S3__REGION (as for the "
        "coordinator) or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.",
    )
    get.add_argument("source", help="http(s)://coordinator, s3://bucket/key, a file, or -")
    get.add_argument("-o", "--output", help="output file, - for stdout (default: model.<format>)")
    get.add_argument(
        "--format", choices=["npy", "json", "f32"], help="output format (default: from -o's suffix, else npy)"
    )
    get.add_argument(
        "--data-type", help="convert as F32/F64/I32/I64 (default: the model's mask config, else F32)"
    )
    get.add_argument("--s3-endpoint", help="S3 endpoint URL for s3:// sources, e.g. http://minio:9000")
    get.set_defaults(run=_model_get)
    return parser


def _say(args: argparse.Namespace, message: str) -> None:
    print(f"xaynet {args.command}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except UsageError as error:
        _say(args, str(error))
        return EXIT_USAGE
    except BrokenPipeError:  # `xaynet ... | head`: the reader left, nobody to tell
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        if args.verbose:
            raise
        _say(args, "interrupted")
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:  # SIGTERM, where a command turns it into a cancellation
        if args.verbose:
            raise
        _say(args, "terminated")
        return EXIT_TERMINATED
    except Exception as error:  # the last line of defence against tracebacks
        if args.verbose:
            raise
        cause = str(error) or type(error).__name__
        _say(args, f"{cause} (run with -v for the traceback)")
        return EXIT_RUNTIME
    return result


if __name__ == "__main__":
    raise SystemExit(main())
