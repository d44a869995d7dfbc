"""The generated reference pages (docs/_ext/mtbrain_reference.py) are complete."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from mtbrain.cli import build_parser
from mtbrain.config import describe
from mtbrain.engine.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ref():  # noqa: ANN201 - the extension module
    path = REPO_ROOT / "docs" / "_ext" / "mtbrain_reference.py"
    spec = importlib.util.spec_from_file_location("mtbrain_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mtbrain_reference", module)
    spec.loader.exec_module(module)
    return module


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def test_cli_page_has_every_command_and_option(ref) -> None:  # noqa: ANN001
    parser = build_parser()
    page = ref.render_cli(parser)
    commands = subparsers(parser)
    assert {"audit", "split", "train", "evaluate", "predict"} <= set(commands)
    for name, sub in commands.items():
        assert f"## mtbrain {name}\n" in page
        assert f"(cli-{name})=" in page
        section = page.split(f"## mtbrain {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:  # noqa: SLF001
            if isinstance(action, argparse._HelpAction):  # noqa: SLF001
                continue
            names = action.option_strings or [action.metavar or action.dest]
            for option in names:
                assert f"`{option}`" in section, f"{name}: {option} missing"
    assert "`--set`" in page and "repeatable" in page
    assert "| `--batch-size` | `N` | Default `32` |" in page  # no help: the default alone


def test_every_config_key_documented(ref) -> None:  # noqa: ANN001
    rows = ref.config_rows()
    assert rows[: len(describe(TrainConfig))] != rows  # the policy options were added
    keys = [key for key, _, _, _ in rows]
    assert set(keys) >= {key for key, _, _, _ in describe(TrainConfig)}
    assert "data.datasets[].policy.no_tumor_boxes" in keys
    assert "data.datasets[].path" in keys and "train.lr" in keys and "loss.w_box" in keys
    undocumented = [key for key, _, _, doc in rows if not doc.strip()]
    assert not undocumented, f"config keys without an Attributes: entry: {undocumented}"
    page = ref.render_config(rows)
    for key in keys:
        assert f"| `{key}` |" in page
    assert "| `train.lr` | a number | `0.001` |" in page
    assert "| `data.split` | a string or null | `null` |" in page
    assert "{py:class}`mtbrain.data.policy.LabelPolicy`" in page


def test_markdown_helpers(ref) -> None:  # noqa: ANN001
    assert ref.rst_to_myst("``a`` and :func:`m.f`") == "`a` and {py:func}`m.f`"
    assert ref.cell("a | b <c> *d* `x|y`") == "a \\| b \\<c\\> \\*d\\* `x\\|y`"
    assert ref.code("a`b") == "``a`b``"


def test_generate_writes_only_changes(ref, tmp_path: Path) -> None:  # noqa: ANN001
    paths = ref.generate(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [ref.CLI_PAGE, ref.CONFIG_PAGE]
    stamp = paths[0].stat().st_mtime_ns
    assert ref.generate(tmp_path) == paths
    assert paths[0].stat().st_mtime_ns == stamp
