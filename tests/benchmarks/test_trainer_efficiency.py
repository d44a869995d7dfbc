"""benchmarks/trainer_efficiency.py: the trainer against a bare loop, for a given config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "trainer_efficiency.py"


def test_config_and_overrides_reach_the_run(tmp_path: Path) -> None:
    """With --config and --set the trainer runs that config (here: tiny synthetic set, two
    frozen stages, the refining box stage) and the table reports an efficiency."""
    cmd = [sys.executable, str(SCRIPT), "--config", str(REPO / "configs" / "demo_synthetic.yaml"),
           "--set", "data.synthetic_per_class=8",
           "--set", "data.size=64", "--set", "train.batch_size=4",
           "--set", "train.freeze_stages=2",
           "--set", "model.box_head_options={roi_refine: true}",
           "--precision", "fp32", "--steps", "2", "--warmup", "1", "--repeat", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path,
                         timeout=600).stdout
    assert "frozen stages 2" in out and "'roi_refine': True" in out and "64 px, batch 4" in out
    row = re.search(r"\| fp32 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out)
    assert row is not None, out
    ours, bare, eff = map(float, row.groups())
    assert ours > 0 and bare > 0 and abs(eff - ours / bare) < 0.02


def test_unknown_override_is_a_one_line_error() -> None:
    cmd = [sys.executable, str(SCRIPT), "--config", str(REPO / "configs" / "demo_synthetic.yaml"),
           "--set", "train.no_such_key=1", "--precision", "fp32"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "no_such_key" in run.stderr
    assert "Traceback" not in run.stderr
