"""The image's contract, tested without a Docker engine: the Dockerfile's structure (pinned base,
test stage the image depends on, the original's `/app/coordinator`), and the scripts it installs,
run here as the image would run them."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_base_image_is_pinned_to_a_release() -> None:
    steps = instructions()
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    bases = [rest.split()[0] for keyword, rest in steps if keyword == "FROM"]
    assert all(base in ("${PYTHON_IMAGE}", "runtime", "build") for base in bases), bases


def test_the_image_is_built_only_after_its_test_stage_passed() -> None:
    steps = instructions()
    stages = [rest.split() for keyword, rest in steps if keyword == "FROM"]
    names = [stage[2] for stage in stages if len(stage) == 3 and stage[1].upper() == "AS"]
    assert names == ["build", "runtime", "test"]
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    assert any(keyword == "COPY" and "--from=test" in rest for keyword, rest in final)
    test_stage = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert "ruff check" in test_stage and "/app/smoke-test" in test_stage


def test_both_contracts_are_in_the_image() -> None:
    steps = instructions()
    assert ("ENTRYPOINT", '["/app/entrypoint"]') in steps
    copied = " ".join(rest for keyword, rest in steps if keyword == "COPY")
    assert "docker/coordinator" in copied and "docker/entrypoint" in copied
    assert any(keyword == "USER" and rest == "10001" for keyword, rest in steps)  # the operator's runAsUser


def test_every_copied_path_exists_and_is_not_docker_ignored() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    for keyword, rest in instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in rest.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in ignored), source


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The scripts call `xaynet`: the one installed next to this Python.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["sh", str(DOCKER / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": path, **(env or {})},
    )


@pytest.fixture
def candidates(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "etc-xaynet-config.toml", tmp_path / "app-config.toml"


def _typo_config(path: Path) -> None:
    path.write_text("[pett]\n[model]\nlength = 4\n")  # stops the start at once, naming the file


def test_without_arguments_the_mounted_config_is_used(candidates: tuple[Path, Path]) -> None:
    ours, original = candidates
    env = {"XAYNET_CONFIG_PATHS": f"{ours} {original}"}
    nothing = run("entrypoint", env=env)
    assert nothing.returncode == 2 and "mount one at /etc/xaynet/config.toml" in nothing.stderr
    _typo_config(original)
    only_original = run("entrypoint", env=env)
    assert only_original.returncode == 2 and f"{original}: unknown section [pett]" in only_original.stderr
    _typo_config(ours)
    both = run("entrypoint", env=env)
    assert both.returncode == 2 and f"{ours}: unknown section [pett]" in both.stderr


def test_the_original_command_and_ours_pass_through(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    _typo_config(config)
    original = run("coordinator", "-c", str(config))
    assert original.returncode == 2 and f"{config}: unknown section [pett]" in original.stderr
    ours = run("entrypoint", "coordinator", "--config", str(config))
    assert ours.returncode == 2 and f"{config}: unknown section [pett]" in ours.stderr
    version = run("entrypoint", "--version")
    assert version.returncode == 0 and version.stdout.startswith("xaynet ")


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_build_time_smoke_test_passes_here() -> None:
    result = run(
        "smoke-test",
        str(ROOT / "configs" / "config.toml"),
        env={"XAYNET_SHIM": str(DOCKER / "coordinator"), "SMOKE_PORT": str(free_port())},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke-test: ok" in result.stdout
