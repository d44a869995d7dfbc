"""Tests of the ``mtbrain`` command line (mtbrain.cli): audit and split end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtbrain.cli import COMMANDS, build_parser, main
from mtbrain.data.splitfile import SplitFile
from mtbrain.data.synthetic import generate, plant_duplicates

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    root = generate(tmp_path / "syn", n_per_class=8, size=128, seed=2)
    pairs = plant_duplicates(root, n_exact=2, n_near=2, seed=2)
    return root, pairs


def test_audit_prints_report_and_writes_json(
    tree: tuple[Path, list[tuple[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    out = tmp_path / "reports" / "audit.json"
    assert main(["audit", str(root), "--json", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "== syn: 36 images, layout kaggle_bbox" in captured.out
    assert "exact: 2 extra copies in 2 groups" in captured.out
    assert "near: 2 groups with re-encoded/resized copies" in captured.out
    assert f"wrote {out}" in captured.err
    report = json.loads(out.read_text())
    assert report["format"] == "mtbrain-audit"
    ds = report["datasets"][0]
    assert list(ds["counts"]) == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert sum(ds["counts"].values()) == 36
    assert ds["duplicates"]["groups"] == 4
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_audit_two_sets_quiet(
    tree: tuple[Path, list[tuple[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    other = generate(tmp_path / "other", n_per_class=2, size=128, seed=9)
    out = tmp_path / "a.json"
    assert main(["audit", str(root), str(other), "--quiet", "--no-near", "--json", str(out)]) == 0
    assert capsys.readouterr().out == ""
    report = json.loads(out.read_text())
    assert [d["name"] for d in report["datasets"]] == ["syn", "other"]
    assert report["duplicates"]["params"] is None
    assert report["duplicates"]["cross_set"][0]["groups"] == 0


def test_split_writes_leak_free_file(
    tree: tuple[Path, list[tuple[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, pairs = tree
    out = tmp_path / "split.json"
    rc = main(
        ["split", str(root), "--out", str(out), "--val", "0.2", "--test", "0.2", "--seed", "3"]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "36 images, 4 duplicate groups (8 images) kept whole; seed 3" in text
    split = SplitFile.read(out)
    assert split.layout == "kaggle_bbox" and split.seed == 3
    assert split.fractions == {"val": 0.2, "test": 0.2}
    assert split.policy["on_error"] == "raise"
    where = {r: p for p, rels in split.parts.items() for r in rels}
    assert len(where) == 36
    for a, b in pairs:
        assert where[a] == where[b]
    assert sorted(split.groups) == sorted(sorted(p) for p in pairs)
    # the parts load back through DATA = split.json:part
    assert main(["audit", f"{out}:val", "--quiet", "--no-near"]) == 0


def test_missing_folder_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["audit", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {missing}: data path not found\n"
    assert main(["split", str(missing), "--out", str(tmp_path / "s.json")]) == 2
    assert "data path not found" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_bad_split_fractions(
    tree: tuple[Path, list[tuple[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    assert (
        main(
            ["split", str(root), "--out", str(tmp_path / "s.json"), "--val", "0.6", "--test", "0.5"]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("error: --val + --test must be below 1")
    with pytest.raises(SystemExit) as exc:
        main(["split", str(root), "--out", str(tmp_path / "s.json"), "--val", "1.5"])
    assert exc.value.code == 2
    assert "must be in [0, 1)" in capsys.readouterr().err


def test_bad_layout_name_is_config_error(
    tree: tuple[Path, list[tuple[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    assert main(["audit", str(root), "--layout", "no_such_layout"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_layout" in err and "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "audit" in capsys.readouterr().err


def test_every_command_registered() -> None:
    parser = build_parser()
    names = {c.name for c in COMMANDS}
    assert {"audit", "split"} <= names
    args = parser.parse_args(["split", "d", "--out", "s.json"])
    assert (args.val, args.test, args.seed, args.on_error) == (0.15, 0.15, 0, "raise")
    assert parser.parse_args(["audit", "d"]).on_error == "skip"


def test_python_dash_m_help_is_fast() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, "-m", "mtbrain", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0
    assert "audit" in res.stdout and "split" in res.stdout
    # --help imports no heavy library
    probe = (
        "import sys, mtbrain.cli; mtbrain.cli.build_parser(); "
        "print(sorted(m for m in ('numpy', 'torch', 'PIL', 'sklearn') if m in sys.modules))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert res.stdout.strip() == "[]"
