"""The examples run as their READMEs say, against a real `xaynet coordinator` process."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import coordinator_process, free_port

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"

pytest.importorskip("sklearn", reason="the examples need scikit-learn (pip install 'xaynet[examples]')")


def _run_example(tmp_path: Path, config: Path, script: Path, *extra: str, rounds: int = 2) -> str:
    port = free_port()
    env = {"XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}"}  # the README's config, on a free port
    with coordinator_process(tmp_path, config.read_text(), port, env=env) as coordinator:
        result = subprocess.run(
            [sys.executable, str(script), "--url", coordinator.url, "--devices", "10",
             "--rounds", str(rounds), "--timeout", "240", *extra],
            capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr + coordinator.logs()[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def _accuracies(out: str) -> list[float]:
    return [float(a) / 100 for a in re.findall(r"global model \d+: test accuracy ([\d.]+)%", out)]


@pytest.mark.parametrize("script", ["participant_asyncio.py", "participant_wheel_api.py"])
def test_sklearn_example(tmp_path: Path, script: str) -> None:
    out = _run_example(tmp_path, EXAMPLES / "sklearn" / "coordinator.toml", EXAMPLES / "sklearn" / script)
    accuracies = _accuracies(out)
    assert len(accuracies) == 2 and accuracies[-1] >= 0.75, out  # chance: 10 %
    assert "smallest bound type: B2 (±100)" in out  # what the README says and coordinator.toml uses


@pytest.mark.skipif(
    importlib.util.find_spec("xaynet_sdk") is None, reason="the original wheel is not installed"
)
def test_sklearn_example_on_the_original_wheel(tmp_path: Path) -> None:
    out = _run_example(
        tmp_path,
        EXAMPLES / "sklearn" / "coordinator.toml",
        EXAMPLES / "sklearn" / "participant_wheel_api.py",
        "--wheel",
    )
    assert len(_accuracies(out)) == 2 and _accuracies(out)[-1] >= 0.75, out


def test_torch_example(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch is not installed (pip install 'xaynet[torch]')")
    out = _run_example(
        tmp_path, EXAMPLES / "torch" / "coordinator.toml", EXAMPLES / "torch" / "participant.py"
    )
    assert len(_accuracies(out)) == 2 and _accuracies(out)[-1] >= 0.5, out
