"""The README tells the truth: its Python samples run with the current code
and print what the README says they print; the prerequisites are complete;
no reference points outside the repository; shmx.h states the struct_size
rule for every struct."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def samples_with_output():
    """(code, expected output) for every ```python block followed by
    "prints" and a ```text block."""
    pat = re.compile(r"```python\n((?:(?!```).)*?)```\s*\nprints\s*\n\s*```text\n(.*?)```", re.S)
    return [(m.group(1), m.group(2)) for m in pat.finditer(README)]


@pytest.mark.parametrize("index", range(len(samples_with_output())))
def test_readme_sample_prints_what_the_readme_says(index: int, tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    code, expected = samples_with_output()[index]
    name = f"shmxtest-readme-{uuid.uuid4().hex[:8]}"
    code = code.replace('"my_stream"', repr(name))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected, f"README says:\n{expected}\nthe code prints:\n{r.stdout}"


def test_there_are_samples_to_check() -> None:
    assert len(samples_with_output()) >= 2


def test_prerequisites_and_references() -> None:
    setup = README[README.index("## Set-up"):README.index("## Quick start")]
    for needed in ("python3-dev", "python3-venv", "build-essential", "venv"):
        assert needed in setup, needed
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in setup
    assert "DESIGN.md" not in README and "steering" not in README
    assert (ROOT / "docs" / "design.md").exists() and "docs/design.md" in README
    for call in ("fileno()", "arm()", "control_fileno()", "await_control", "history=True",
                 "wait_readers(", "shape=", "frame_to_numpy"):
        assert call in README, call


def test_shmx_h_states_the_struct_size_rule_for_every_struct() -> None:
    header = (ROOT / "csrc" / "include" / "shmx.h").read_text()
    for m in re.finditer(r"typedef struct (shmx_\w+) \{\n    uint32_t struct_size;", header):
        before = " ".join(header[:m.start()].rstrip().splitlines()[-3:])
        assert "struct_size" in before or "_init()" in before, f"{m.group(1)}: {before!r}"
    assert "0," in header and "full size" in header  # what struct_size 0 means
