"""Every CLI mistake a new user makes, through the real `xaynet` command (a subprocess): one or
two lines saying what to do, exit 2 for usage and settings, 1 at runtime, 130 after Ctrl-C,
and never a traceback (unless `-v`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import free_port, pet_config, read_until

XAYNET = [sys.executable, "-m", "xaynet"]


def xaynet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XAYNET, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def assert_short_error(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_no_config_says_pass_c_file() -> None:
    assert_short_error(xaynet("coordinator"), 2, "pass -c FILE")


def test_a_directory_as_config(tmp_path: Path) -> None:
    _config(tmp_path, pet_config(4, port=free_port()))
    assert_short_error(
        xaynet("coordinator", "-c", str(tmp_path)), 2, "is a directory", f"{tmp_path}/config.toml"
    )


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        (
            ("min_sum_count", "min_sum_cout"),
            ("unknown key pet.min_sum_cout", "did you mean pet.min_sum_count?"),
        ),
        (("[pet]", "[pett]"), ("unknown section [pett]", "did you mean [pet]?")),
        (
            ('group_type = "Prime"', 'group_type = "Primes"'),
            ('"Integer", "Prime", "Power2"', 'did you mean "Prime"'),
        ),
        (("min_update_count = 3", "min_update_count = 2"), ("pet.min_update_count (2)",)),
    ],
)
def test_settings_mistakes_stop_the_start(
    tmp_path: Path, change: tuple[str, str], phrases: tuple[str, ...]
) -> None:
    text = pet_config(4, port=free_port())
    assert change[0] in text
    path = _config(tmp_path, text.replace(*change, 1))
    assert_short_error(xaynet("coordinator", "-c", str(path)), 2, *phrases)


def test_tls_switched_on_without_the_files(tmp_path: Path) -> None:
    text = pet_config(4, port=free_port()).replace(
        "[api]\n", f'[api]\ntls_certificate = "{tmp_path}/tls.pem"\ntls_key = "{tmp_path}/tls.key"\n'
    )
    path = _config(tmp_path, text)
    result = xaynet("coordinator", "-c", str(path), env={"XAYNET_API__TLS": "true"})
    assert_short_error(result, 2, f"api.tls_certificate: {tmp_path}/tls.pem does not exist")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _config(tmp_path, pet_config(4, port=port))
        result = xaynet("coordinator", "-c", str(path))
    assert_short_error(result, 1, f"cannot listen on 127.0.0.1:{port}", "already in use")


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        path = _config(tmp_path, pet_config(4, port=taken.getsockname()[1]))
        result = xaynet("-v", "coordinator", "-c", str(path))
    assert result.returncode == 1
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("command", ["participant", "test-drive"])
def test_a_url_without_scheme(command: str) -> None:
    assert_short_error(xaynet(command, "-u", "127.0.0.1:8081"), 2, "has no scheme: use http://127.0.0.1:8081")


def test_an_unknown_option() -> None:
    assert_short_error(xaynet("coordinator", "--bogus"), 2, "unrecognized arguments: --bogus", "--help")


def test_a_wrong_url_is_not_silent() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = xaynet("participant", "-u", url, "--give-up-after", "3")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"waiting for the coordinator at {url} (giving up after 3 s)" in result.stdout
    assert f"no answer from {url} yet" in result.stdout
    assert time.monotonic() - started < 60


def test_version_and_help() -> None:
    version = xaynet("--version")
    assert version.returncode == 0 and version.stdout.startswith("xaynet 0.")
    overview = xaynet("--help").stdout
    for command, summary in [
        ("coordinator", "run a coordinator"),
        ("test-drive", "N participants complete private rounds"),
        ("participant", "run one participant"),
        ("operator", "run the Kubernetes operator"),
    ]:
        assert any(line.split()[:1] == [command] and summary in line for line in overview.splitlines()), (
            overview
        )
    participant = " ".join(xaynet("participant", "--help").stdout.split())
    assert "(default: 120.0)" in participant  # the give-up time a user waits
    drive = " ".join(xaynet("test-drive", "--help").stdout.split())
    for default in ("(default: 10)", "(default: 3)", "(default: 3912)", "default: 300, more for"):
        assert default in drive


# A suite started in the background by a non-interactive shell (`pytest ... &`) passes SIGINT
# ignored to every child, and a process that starts with SIGINT ignored keeps ignoring it (as a
# background job should). The command under test runs as from a terminal: SIGINT at default.
WITH_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])",
]


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_stopping_test_drive_prints_the_finished_rounds(sig: signal.Signals, code: int, said: str) -> None:
    process = subprocess.Popen(
        [*WITH_DEFAULT_SIGINT, *XAYNET, "test-drive", "-n", "8", "--rounds", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # a round that completed (on a loaded machine the first may fail: no sum participant
        # in time; the next one completes)
        before = read_until(process, " completed: accepted", 180)
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)  # a deadline for a loaded machine, not a wait
    finally:
        process.kill()
    output = before + out + err
    assert process.returncode == code, output
    assert "Traceback" not in output
    assert "interrupted after" in out and "of 50 rounds" in out
    *before_stop, last = err.strip().splitlines()
    assert last == f"xaynet test-drive: {said}"
    # on a loaded machine a round may fail before the signal: one line each, nothing else
    assert all(line.startswith("round failed: ") for line in before_stop), err
    assert "completed rounds" in out  # the table of what finished


def test_a_missing_or_broken_model_file(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    missing = tmp_path / "nope.json"
    assert_short_error(xaynet("participant", "-u", url, "--model", str(missing)), 2, "No such file")
    broken = tmp_path / "model.json"
    broken.write_text("[1,")
    assert_short_error(xaynet("participant", "-u", url, "--model", str(broken)), 2, f"--model {broken}")
