"""Fixtures for the browser suite: a real JupyterLab server and a real (Debian) Chromium driven by Playwright.

``jupyter_lab``
    ``python -m jupyter lab`` on a free loopback port, with a random token,
    rooted in a temporary folder holding copies of ``notebooks/``, and with
    ``DPSD_FAST=1`` and a temporary ``DPSD_CACHE_DIR`` in its environment
    (its kernels inherit both). Jupyter's config, runtime, data and settings
    folders are temporary too, so nothing of the user's setup leaks in and
    nothing is left behind. The server is always stopped, kernels included,
    also when a test fails or the run is interrupted.
``browser_page``
    One page of Debian's ``/usr/bin/chromium`` (never a downloaded browser),
    launched headless with a fresh profile folder.
``artifacts``
    Where screenshots, the server log and the browser console go:
    ``tests/browser/artifacts/`` (git-ignored), or ``$DPSD_BROWSER_ARTIFACTS``.
    The path is printed at the end of the pytest run.

Everything skips with a reason (never fails) when Chromium, Playwright or
JupyterLab is missing: ``.ci/browser_setup.sh`` installs the first two.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
ARTIFACTS = Path(os.environ.get("DPSD_BROWSER_ARTIFACTS") or HERE / "artifacts").resolve()

# What the probe of this machine kind uses; without the background-networking
# flags Chromium keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_TIMEOUT = 120  # s; a busy shared machine can take a while to import JupyterLab


def chromium_path() -> str | None:
    """``$DPSD_CHROMIUM`` if set (and only it), else Debian's ``/usr/bin/chromium``, else a ``chromium`` on PATH."""
    chosen = os.environ.get("DPSD_CHROMIUM")
    for candidate in ([chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium")]):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing() -> str | None:
    """Why the browser suite cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (run .ci/browser_setup.sh)"
    if chromium_path() is None:
        where = os.environ.get("DPSD_CHROMIUM") or "/usr/bin/chromium"
        return f"Chromium is not installed at {where} (run .ci/browser_setup.sh, or set DPSD_CHROMIUM)"
    try:
        import jupyterlab  # noqa: F401
        import jupyterlab_widgets  # noqa: F401
    except ImportError as exc:
        return f"JupyterLab with the ipywidgets extension is not installed ({exc}; pip install -e '.[test]')"
    return None


# ---------------------------------------------------------------------------
# artifacts, and the path printed at the end of the run
# ---------------------------------------------------------------------------
_artifacts_used = False


@pytest.fixture(scope="session")
def artifacts() -> Path:
    global _artifacts_used
    reason = _missing()
    if reason:  # before touching the folder: a laptop without Chromium keeps its old screenshots
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for pattern in ("[0-9][0-9]-*.png", "FAILED-*.png", "browser-console.log"):  # this suite's, from an earlier run
        for old in ARTIFACTS.glob(pattern):
            old.unlink()
    _artifacts_used = True
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    if _artifacts_used:
        shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
        terminalreporter.write_sep("-", "browser suite artifacts")
        terminalreporter.write_line(f"screenshots, server log and browser console in {ARTIFACTS}")
        for name in shots:
            terminalreporter.write_line(f"  {name}")


# ---------------------------------------------------------------------------
# steps of one scenario: once a step fails, the later ones skip instead of piling up errors
# ---------------------------------------------------------------------------
_failed_step: dict[str, str] = {}


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and call.when in ("setup", "call") and item.get_closest_marker("scenario"):
        if not call.excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
            _failed_step.setdefault(item.module.__name__, item.name)
            page = item.funcargs.get("browser_page")
            if page is not None:  # what the page looked like when the step failed
                try:
                    page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"), timeout=10_000)
                except Exception:  # noqa: BLE001 - a failed screenshot must not hide the real failure
                    pass


def pytest_runtest_setup(item):
    if item.get_closest_marker("scenario"):
        failed = _failed_step.get(item.module.__name__)
        if failed is not None:
            pytest.skip(f"an earlier step of the scenario failed ({failed}); this one needs its page state")


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario: steps of one browser scenario sharing a page; run in order")


# ---------------------------------------------------------------------------
# the JupyterLab server
# ---------------------------------------------------------------------------
@dataclass
class JupyterLab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the server's root_dir (copies of the notebooks)
    cache_dir: Path
    process: subprocess.Popen
    log_path: Path

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (kernels run in their own session, so a process-group kill misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _stop_server(lab: JupyterLab) -> None:
    proc = lab.process
    if proc.poll() is None:
        below = _descendants(proc.pid)
        try:  # the polite way first: shut the kernels down, then the server
            for kernel in lab.api("kernels"):
                lab.api(f"kernels/{kernel['id']}", method="DELETE")
            lab.api("shutdown", method="POST")
        except (OSError, urllib.error.URLError, ValueError):
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        for pid in below:  # kernels the server could not stop: by their own ids, nothing else
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# Module scope: the server, its kernel and the browser end as soon as the scenario does, not at the
# end of a whole `python -m pytest` run (they hold over a GB of memory between them).
@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory, artifacts):
    reason = _missing()
    if reason:
        pytest.skip(reason)

    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    shutil.copytree(NOTEBOOK_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__",
                                                                      "assignments"))
    cache_dir = base / "dpsd_cache"
    cache_dir.mkdir()
    settings = base / "settings"
    # no "Would you like to get notified about official Jupyter news?" toast over the notebook
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))

    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        DPSD_FAST="1",
        DPSD_CACHE_DIR=str(cache_dir),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        IPYTHONDIR=str(base / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        # two shared cores: one torch thread in the kernel leaves the other to the browser and the server
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
           f"--ServerApp.token={token}", f"--port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={base / 'workspaces'}"]
    log_path = artifacts / "jupyterlab-server.log"
    log = open(log_path, "w")
    log.write(" ".join(cmd).replace(token, "<token>") + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lab = JupyterLab(url=f"http://127.0.0.1:{port}", token=token, root=root, cache_dir=cache_dir,
                     process=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode} before answering:\n{lab.log_tail()}")
            try:
                lab.api("status")
                break
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {lab.url} within {SERVER_START_TIMEOUT} s:\n"
                                f"{lab.log_tail()}")
                time.sleep(0.5)
        yield lab
    finally:
        _stop_server(lab)
        log.close()


# ---------------------------------------------------------------------------
# the browser
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_context(tmp_path_factory, artifacts):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    console = open(artifacts / "browser-console.log", "a")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1800}, device_scale_factor=1, locale="en-US",
            timezone_id="UTC", reduced_motion="reduce")
        context.set_default_timeout(30_000)

        def record(page):
            page.on("console", lambda m: console.write(f"[{m.type}] {m.text}\n"))
            page.on("pageerror", lambda e: console.write(f"[pageerror] {e}\n"))

        for page in context.pages:
            record(page)
        context.on("page", record)
        try:
            yield context
        finally:
            context.close()
            console.close()


@pytest.fixture(scope="module")
def browser_page(browser_context):
    """The one tab the module's scenario drives, start to end."""
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    yield page
