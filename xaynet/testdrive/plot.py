"""`test-drive --plot FILE.png`: accuracy of each global model per round, beside the baseline.

Uses matplotlib's object API with the Agg canvas (no display, no global pyplot state);
matplotlib is an optional dependency (`pip install 'xaynet[examples]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xaynet.testdrive.learning import MissingExtraError
from xaynet.testdrive.records import RoundRecord


def require_matplotlib() -> None:
    """Fail before the run, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional dependency
    except ImportError:
        raise MissingExtraError("--plot needs matplotlib: pip install 'xaynet[examples]'") from None


def plot_accuracy(path: str, completed: list[RoundRecord], workload: Any) -> str:
    """Write the PNG; return the line that says where it is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    scored = [float(r.accuracy) for r in completed if r.accuracy is not None]
    figure = Figure(figsize=(6.4, 4.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    rounds = list(range(1, len(scored) + 1))
    axes.plot(rounds, scored, marker="o", label="federated (global model)")
    baseline = getattr(workload, "baseline", None)
    if baseline is not None:
        axes.axhline(baseline, linestyle="--", color="gray", label=f"central baseline ({baseline:.1%})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("completed round")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(f"xaynet test-drive --task {workload.name}: {len(completed)} private rounds")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target)
    return f"accuracy per round written to {target}"
