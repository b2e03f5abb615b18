"""The notebooks: every pair in sync, every notebook well-formed, and all of them run (nbval, fast mode).

The nbval run is one subprocess (``python -m pytest --nbval-lax notebooks/0*.ipynb``)
with ``DPSD_FAST=1`` and the session's teacher cache, so a notebook that
raises fails this suite, and cells marked ``# NBVAL_CHECK_OUTPUT`` (the
deterministic ε → σ calibration) must print exactly what the stored
``.ipynb`` shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("0*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _cells(nb):
    """What a pair must agree on: cell type, source and tags, in order."""
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", ()))) for c in nb.cells]


def test_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook numbered {prefix}"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=IDS)
def test_pair_in_sync(ipynb):
    """The .py (py:percent) and the .ipynb hold the same cells; fix with `jupytext --sync notebooks/0*.ipynb`."""
    script = ipynb.with_suffix(".py")
    assert script.exists(), f"{ipynb.name} has no paired {script.name}"
    from_ipynb = jupytext.read(ipynb)
    from_py = jupytext.read(script)
    a, b = _cells(from_ipynb), _cells(from_py)
    assert len(a) == len(b), f"{ipynb.name}: {len(a)} cells, {script.name}: {len(b)} (run jupytext --sync)"
    for i, (ca, cb) in enumerate(zip(a, b)):
        assert ca == cb, f"cell {i} differs between {ipynb.name} and {script.name} (run jupytext --sync)"


#: Every notebook, the main ones and the assignments' (source and student), each with its paired script.
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("**/*.ipynb"))
#: Control characters that may appear in text: only the newline.
_CONTROL = {chr(i) for i in range(32) if chr(i) != "\n"} | {"\x7f"}
_ESCAPES = "(a Python escape gone wrong? \\b of \\big, \\t of \\tilde, \\f of \\frac, \\v of \\varepsilon)"


def _control_characters(text: str) -> list:
    return sorted({repr(ch) for ch in text if ch in _CONTROL})


def _string_constants(source: str):
    """The values of the string literals in Python source (IPython magics and shell lines blanked out)."""
    import ast

    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


@pytest.mark.parametrize("ipynb", ALL_NOTEBOOKS, ids=[str(p.relative_to(NOTEBOOK_DIR)) for p in ALL_NOTEBOOKS])
def test_no_control_characters_in_notebooks(ipynb):
    """No cell (markdown or code), paired script, string a cell makes, or stored LaTeX/Markdown output holds a
    control character other than newline: an escape that turned LaTeX into control characters renders as
    garbage (``P\\big(`` written in a non-raw string is ``P`` + backspace + ``ig(``)."""
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
        bad = _control_characters(cell.source)
        assert not bad, f"{ipynb.name}, cell {i} ({cell.cell_type}): control characters {bad} {_ESCAPES}"
        if cell.cell_type == "code":
            for line, value in _string_constants(cell.source):
                bad = _control_characters(value)
                assert not bad, f"{ipynb.name}, cell {i}, line {line}: a string holds {bad} {_ESCAPES}"
            for output in cell.get("outputs", ()):
                for mime in ("text/latex", "text/markdown"):
                    text = output.get("data", {}).get(mime, "")
                    bad = _control_characters(text if isinstance(text, str) else "".join(text))
                    assert not bad, f"{ipynb.name}, cell {i}: {mime} output holds {bad} {_ESCAPES}"
    script = ipynb.with_suffix(".py")
    if script.exists():
        bad = _control_characters(script.read_text(encoding="utf-8"))
        assert not bad, f"{script.name}: control characters {bad} {_ESCAPES}"


def test_no_control_characters_in_library_strings():
    """The library's strings (figure titles, reports, anything that may be shown as LaTeX) hold no control
    character but newline: write LaTeX in raw strings."""
    for path in sorted((ROOT / "dpsd_lite").rglob("*.py")):  # the subpackages (audit/, course/) too
        for line, value in _string_constants(path.read_text(encoding="utf-8")):
            bad = _control_characters(value)
            assert not bad, f"{path.name}, line {line}: a string holds {bad} {_ESCAPES}"


def test_pairing_is_configured():
    config = NOTEBOOK_DIR / "jupytext.toml"
    assert config.exists()
    assert "py:percent" in config.read_text() and "ipynb" in config.read_text()


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=IDS)
def test_notebook_structure(ipynb):
    """A statement up front, a tagged parameters cell with the fast switch, no helper code, questions at the end."""
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with what the learner will see"
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", ())]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert "DPSD_FAST" in params[0].source, "the parameters cell reads the fast-mode switch"
    assert all(line.split("=")[0].strip().isupper() for line in params[0].source.splitlines()
               if "=" in line and not line.startswith((" ", "#"))), "parameters are CAPITALISED constants"
    for cell in nb.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert not line.startswith(("def ", "class ")), \
                    f"helper machinery belongs in the library, not the notebook: {line!r}"
    assert "question" in nb.cells[-1].source.lower(), "the notebook ends with questions"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=IDS)
def test_checked_cells_have_stored_outputs(ipynb):
    """nbval compares NBVAL_CHECK_OUTPUT cells with what is stored: there must be something stored."""
    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
            assert cell.outputs, f"{ipynb.name}: a checked cell has no stored output (re-execute and save it)"


def test_calibration_cells_are_checked():
    """The ε → σ calibration is deterministic, so nbval checks it."""
    nb = nbformat.read(NOTEBOOK_DIR / "04_dp_labels.ipynb", as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert len(checked) >= 2
    text = "".join(o.get("text", "") for c in checked for o in c.outputs)
    assert "0.231969" in text  # K = 10, ε = 1: e/(e + 9), the reference value of the mission


def clean_copy(ipynb: Path, folder: Path) -> Path:
    """A copy of the notebook as the repository means it: only the checked cells keep their (reference) outputs.

    Whatever a learner ran and saved in their working copy (outputs, execution counts, widget state)
    must not decide whether the tests pass; the checked cells' stored outputs are what nbval compares.
    """
    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            cell.execution_count = cell.execution_count or 1
        else:
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    out = folder / ipynb.name
    nbformat.write(nb, out)
    return out


def test_clean_copy_ignores_what_a_learner_saved(tmp_path):
    """A notebook run and saved in JupyterLab (outputs everywhere) is tested as the repository's version."""
    nb = nbformat.read(NOTEBOOK_DIR / "04_dp_labels.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" not in cell.source:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="left over\n")]
            cell.execution_count = i
    nbformat.write(nb, tmp_path / "saved.ipynb")
    (tmp_path / "clean").mkdir()
    copy = nbformat.read(clean_copy(tmp_path / "saved.ipynb", tmp_path / "clean"), as_version=4)
    for cell in copy.cells:
        if cell.cell_type == "code":
            assert bool(cell.outputs) == ("NBVAL_CHECK_OUTPUT" in cell.source)
            assert "left over" not in str(cell.outputs)


def test_notebooks_run_in_fast_mode(_session_cache, tmp_path):
    """nbval (--nbval-lax) on clean copies of every notebook with DPSD_FAST=1: no cell may raise; checked cells must match."""
    # One intra-op thread: fast-mode models are tiny, and on a shared CPU two torch threads that
    # spin-wait for each other cost far more than they save.
    env = dict(os.environ, DPSD_FAST="1", DPSD_CACHE_DIR=str(_session_cache), OMP_NUM_THREADS="1",
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    copies = [clean_copy(nb, tmp_path) for nb in NOTEBOOKS]
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", *map(str, copies), "-p", "no:cacheprovider",
           "-q", "--nbval-cell-timeout=600", "-W", "ignore::DeprecationWarning", "--rootdir", str(tmp_path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"nbval failed (exit {proc.returncode}) after {seconds:.0f} s:\n{tail}"
    assert "passed" in proc.stdout
