"""benchmarks/errors_by_source.py: errors per class and image source from a predictions file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "errors_by_source.py"
spec = importlib.util.spec_from_file_location("errors_by_source", SCRIPT)
errors_by_source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(errors_by_source)

RECORDS = [
    {"image": "Glioma/images/Tr-gl_0001.jpg", "label": "glioma"},
    {"image": "Glioma/images/gg (12).jpg", "label": "meningioma"},
    {"image": "No Tumor/images/image(3).jpg", "label": "glioma"},
    {"image": "No Tumor/images/image(4).jpg", "label": "no_tumor"},
    {"image": "No Tumor/images/Tr-no_0002.jpg", "label": "no_tumor"},
    {"image": "broken.jpg", "error": "cannot decode"},
    {"image": "loose.jpg", "label": "glioma"},          # no class folder: not counted
]


def test_tally_counts_images_and_errors_per_class_and_source() -> None:
    sources = errors_by_source.parse_sources(["Tr/Te-xx=^T[re]-", "numbered=\\(\\d+\\)"])
    counts = errors_by_source.tally(RECORDS, sources)
    assert dict(counts) == {("glioma", "Tr/Te-xx"): [1, 0], ("glioma", "numbered"): [1, 1],
                            ("no_tumor", "numbered"): [2, 1], ("no_tumor", "Tr/Te-xx"): [1, 0]}


def test_command_line_table_and_errors(tmp_path: Path) -> None:
    preds = tmp_path / "predictions.json"
    preds.write_text(json.dumps(RECORDS))
    out = subprocess.run([sys.executable, str(SCRIPT), str(preds)], capture_output=True,
                         text=True, check=True).stdout
    assert "| no_tumor | other | 2 | 1 | 0.500 |" in out
    assert "| all | other | 3 | 2 | 0.333 |" in out
    bad = subprocess.run([sys.executable, str(SCRIPT), str(preds), "--source", "x=("],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "bad regular expression" in bad.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.json")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "none.json" in missing.stderr
