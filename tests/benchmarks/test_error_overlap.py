"""benchmarks/error_overlap.py: errors shared between runs and the averaged ensemble."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "error_overlap.py"
spec = importlib.util.spec_from_file_location("error_overlap", SCRIPT)
error_overlap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(error_overlap)


def rec(image: str, probs: tuple[float, float]) -> dict:
    p = dict(zip(("glioma", "no_tumor"), probs, strict=True))
    return {"image": image, "label": max(p, key=p.get), "probs": p}


# Image a: wrong in both runs; b: wrong in run 1 only, right on average; c: right in both.
RUN1 = [rec("Glioma/a.jpg", (0.2, 0.8)), rec("Glioma/b.jpg", (0.45, 0.55)),
        rec("No Tumor/c.jpg", (0.1, 0.9)), {"image": "broken.jpg", "error": "cannot decode"}]
RUN2 = [rec("Glioma/a.jpg", (0.3, 0.7)), rec("Glioma/b.jpg", (0.9, 0.1)),
        rec("No Tumor/c.jpg", (0.4, 0.6))]


def write(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_overlap_and_ensemble_count_the_right_images(tmp_path: Path) -> None:
    runs = [error_overlap.load_run(write(tmp_path, f"{i}.json", r)) for i, r in enumerate((RUN1, RUN2))]
    assert dict(error_overlap.overlap(runs)) == {1: 1, 2: 1}
    assert error_overlap.ensemble_errors(runs) == 1          # only a stays wrong
    assert error_overlap.ensemble_errors(runs[:1]) == 2


def test_command_line_tables_and_errors(tmp_path: Path) -> None:
    one, two = write(tmp_path, "1.json", RUN1), write(tmp_path, "2.json", RUN2)
    out = subprocess.run([sys.executable, str(SCRIPT), str(one), str(two)], capture_output=True,
                         text=True, check=True).stdout
    assert f"| {one} | 3 | 2 | 0.333 |" in out
    assert "| 2 | 1 |" in out and "Glioma/a.jpg: glioma -> no_tumor, no_tumor" in out
    assert "| runs 1 + 2 | 1 | 0.667 |" in out
    other = write(tmp_path, "3.json", RUN2[:2])
    bad = subprocess.run([sys.executable, str(SCRIPT), str(one), str(other)], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "3.json" in bad.stderr and "other images" in bad.stderr
    noprobs = write(tmp_path, "4.json", [{"image": "Glioma/a.jpg", "label": "glioma"}])
    bad = subprocess.run([sys.executable, str(SCRIPT), str(one), str(noprobs)], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "4.json" in bad.stderr and "no class probabilities" in bad.stderr
