"""Every tutorial in ``docs/tutorials`` runs, so the pages cannot rot.

Convention (documented in docs/contributing.md): in a tutorial page, each fenced block whose
info string is exactly ``python`` is executed in order in one namespace per page, and each
fenced block whose info string is exactly ``bash`` is executed with ``bash -e`` in the same
temporary working directory, with the interpreter's ``bin`` folder first on ``PATH`` (so
``mtbrain`` is the installed command). ``$MTBRAIN_REPO`` holds the repository root. Blocks
with any other info string (``text``, ``console``, ``yaml``, ``{code-block} ...``) are shown,
not run. The pages run with one thread per process (``OMP_NUM_THREADS=1``; tiny models on
busy cores only slow down with more).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((REPO_ROOT / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of the executable blocks of a Markdown page, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip()
        if info in ("python", "bash"):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((info, match.group("body"), line))
    return blocks


def test_code_blocks_parser() -> None:
    page = "a\n```python\nx = 1\n```\n```text\nno\n```\n````bash\necho ```\n````\n"
    assert code_blocks(page) == [("python", "x = 1\n", 2), ("bash", "echo ```\n", 8)]


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       one_thread: None) -> None:
    blocks = code_blocks(page.read_text(encoding="utf-8"))
    assert blocks, f"{page.name} has no executable code block"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MTBRAIN_REPO": str(REPO_ROOT),
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTBRAIN_REPO", str(REPO_ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": f"tutorial_{page.stem}"}
    for language, code, line in blocks:
        where = f"{page.name}:{line}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the page's own code
        else:
            done = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (
                f"{where}: bash block failed ({done.returncode})\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-3000:]}")
