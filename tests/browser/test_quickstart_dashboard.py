"""The quickstart in a real JupyterLab, in a real Chromium, used the way a learner uses it.

One scenario in steps that share one browser tab (a failed step skips the
later ones, which need its page state):

1. open ``01_quickstart.ipynb``, Run ▸ Run All Cells from the menu bar (fast
   mode), wait for the dashboard; no cell may raise, no widget may fail to
   render, and every figure the notebook drew (the live monitor included) is
   a non-blank image;
2. drag the ε slider's handle to about ε = 20 and land on it with the arrow
   keys, raise the steps with the arrow keys, switch the noise mode in the
   dropdown (through ``none``, which greys ε out: a round trip through the
   kernel), click Run. While it runs, the progress bar fills part-way, Run is
   disabled, Stop enabled, the status reads "step k/N" and the live views
   appear (recorded by a MutationObserver, so a short run cannot slip between
   polls). After it, the status reads the student's accuracy, the runs table
   has the row (mode, ε, steps, the same accuracy), and the live accuracy
   curve, the synthetic-image grid and the accuracy-vs-ε plot are real,
   non-blank images;
3. the dashboard still responds after a run: the slider moves again (arrow
   keys), another mode, a second Run adds a second row with the new settings;
4. save (Ctrl+S) and reload the page: the widgets come back from the kernel
   with their state (slider position, mode, both rows, readout, images) and
   are still wired to it;
5. on the restored dashboard, type the slider's maximum (600) into the steps readout, Run, and
   Stop it after a few steps: the kernel answers while the thread trains,
   the run ends "stopped early" and the controls are unlocked.

Screenshots of every step (the dashboard alone, and the whole window) go to
the artifacts folder (see conftest.py); a failing step adds FAILED-<step>.png.
"""

from __future__ import annotations

import math
import re
import time

import pytest

from dpsd_lite.names import generator_label

pytestmark = [pytest.mark.scenario]

NOTEBOOK = "01_quickstart.ipynb"
RUN_ALL_TIMEOUT = 300  # s: fast mode trains a digits teacher and runs a few transcriptions
RUN_TIMEOUT = 180  # s: one dashboard run in fast mode (seconds when the machine is quiet)

# The learner's two runs. ε values sit on the slider's grid (steps of 0.05 in log10) so the arrow
# keys can land on them exactly; 60 steps (up from the notebook's 10) give a student clearly above
# chance in a few seconds, so the screenshots show a meaningful result.
EPS_FIRST = 10 ** 1.3  # ≈ 20: drag from 10 to about there, then fine-tune with the arrow keys
MODE_FIRST = "label"  # the notebook starts on rr: the dropdown must really change it
EPS_SECOND = 10 ** 0.5  # ≈ 3.16: sixteen presses of ← from EPS_FIRST
MODE_SECOND = "rr"
STEPS = 60
LEARNED = generator_label("learned")  # the runs table names the generator: DPSD's own by default
LONG = 600  # a long run, within the steps slider's range (four times the library's default run)

# ---------------------------------------------------------------------------
# where things are in the page
# ---------------------------------------------------------------------------
DASHBOARD = ".jp-OutputArea-output:has(.widget-html-content b:text-is('dpsd_lite dashboard'))"
MONITOR = ".widget-vbox:has(> .widget-hbox > .widget-hprogress)"

# Reads an <img> back through a canvas: its size and how much of it is not white
# (a blank plot is all white, or transparent).
IMAGE_STATS_JS = """
async (img) => {
  if (!img.complete) { await new Promise(r => { img.onload = r; img.onerror = r; }); }
  const w = img.naturalWidth, h = img.naturalHeight;
  const out = {naturalWidth: w, naturalHeight: h, width: img.clientWidth, height: img.clientHeight, ink: 0};
  if (!w || !h) return out;
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, w, h).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 16 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) ink++;
  }
  out.ink = ink / (w * h);
  return out;
}
"""

# Whether a <select> shows its selected option's whole text: the text's width against the room inside it.
SELECT_TEXT_FITS_JS = """
(s) => {
  const style = getComputedStyle(s);
  const g = document.createElement('canvas').getContext('2d');
  g.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const text = s.options[s.selectedIndex].textContent;
  const room = s.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 16;  // the arrow
  return g.measureText(text).width <= room;
}
"""

# Records, from the moment it is installed, every state of the Run button, the
# progress bar, the status line and the live outputs, at every DOM change.
# Nothing is sampled by the test itself, so a short run cannot slip between two polls.
RECORDER_JS = """
(root) => {
  const q = (s) => root.querySelector(s);
  const snap = () => {
    const run = [...root.querySelectorAll('button')].find(b => b.textContent.trim() === 'Run');
    const stop = [...root.querySelectorAll('button')].find(b => b.textContent.trim() === 'Stop');
    const bar = q('.widget-hprogress .progress-bar');
    const status = q('.widget-hprogress + .widget-html .widget-html-content');
    const slider = q('.widget-slider .noUi-target');
    const monitorImgs = root.querySelectorAll('%(monitor)s > .widget-hbox:last-child img').length;
    return {t: performance.now(), runDisabled: run ? run.disabled : null, stopDisabled: stop ? stop.disabled : null,
            width: bar ? parseFloat(bar.style.width) : null, barClass: bar ? bar.className : null,
            status: status ? status.textContent : null, monitorImgs,
            sliderDisabled: slider ? slider.hasAttribute('disabled') : null};
  };
  window.__dpsdTimeline = [snap()];
  if (window.__dpsdObserver) window.__dpsdObserver.disconnect();
  window.__dpsdObserver = new MutationObserver(() => window.__dpsdTimeline.push(snap()));
  window.__dpsdObserver.observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
}
""".replace("%(monitor)s", MONITOR)


class Dash:
    """The dashboard's controls and views, found inside its cell output."""

    def __init__(self, page):
        self.page = page
        self.root = page.locator(DASHBOARD)
        self.eps = self.root.locator(".widget-slider").filter(has_text="ε per answer")
        self.eps_handle = self.eps.locator(".noUi-handle")
        self.eps_track = self.eps.locator(".noUi-base")
        self.eps_readout = self.eps.locator(".widget-readout")
        self.eps_target = self.eps.locator(".noUi-target")
        # the noise-mode dropdown, by its label (the generator and teacher dropdowns sit beside it)
        self.mode = self.root.locator(".widget-dropdown").filter(
            has=page.locator("label", has_text=re.compile(r"^\s*noise mode\s*$"))).locator("select")
        steps = self.root.locator(".widget-slider").filter(has_text="steps")
        self.steps_handle = steps.locator(".noUi-handle")
        self.steps_readout = steps.locator(".widget-readout")
        # (not get_by_role: the accessible name includes the Font Awesome icon's glyph)
        self.run = self.root.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
        self.stop = self.root.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Stop\s*$"))
        self.bar = self.root.locator(".widget-hprogress .progress-bar")
        self.status = self.root.locator(".widget-hprogress + .widget-html .widget-html-content")
        monitor_views = self.root.locator(f"{MONITOR} > .widget-hbox:last-child > .widget-output")
        self.curve = monitor_views.nth(0)
        self.grid = monitor_views.nth(1)
        self.table = self.root.locator(".widget-html table")
        self.tradeoff = self.root.locator(".widget-hbox:has(> .widget-html table) > .widget-output")
        self.report = self.root.locator(".widget-output").filter(has_text="unit of privacy")

    # -- reading -------------------------------------------------------------
    def eps_log(self) -> float:
        return float(self.eps_handle.get_attribute("aria-valuenow"))

    def eps_shown(self) -> float:
        return read_number(self.eps_readout)

    def mode_shown(self) -> str:
        return self.mode.evaluate("s => s.options[s.selectedIndex].textContent").replace("\xa0", " ")

    def rows(self) -> list[list[str]]:
        """The runs table's data rows, cell texts (empty while it says 'no runs yet')."""
        cells = self.table.locator("tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.textContent.trim()))")
        return [r for r in cells if len(r) > 1]

    def image_stats(self, view) -> dict:
        img = view.locator("img")
        assert img.count() == 1, f"expected one image in the view, found {img.count()}"
        return img.evaluate(IMAGE_STATS_JS)

    def eps_disabled(self) -> bool:
        return self.eps_target.get_attribute("disabled") is not None

    # -- doing, as a person would ---------------------------------------------
    def drag_eps_to(self, epsilon: float) -> None:
        """Press the mouse on the ε handle, drag it along the track to ε's place, release."""
        lo = float(self.eps_handle.get_attribute("aria-valuemin"))
        hi = float(self.eps_handle.get_attribute("aria-valuemax"))
        self.eps_handle.scroll_into_view_if_needed()
        handle, track = self.eps_handle.bounding_box(), self.eps_track.bounding_box()
        x0, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        x1 = track["x"] + track["width"] * (math.log10(epsilon) - lo) / (hi - lo)
        mouse = self.page.mouse
        mouse.move(x0, y)
        mouse.down()
        mouse.move(x1, y + 2, steps=12)
        mouse.up()

    def key_eps_to(self, epsilon: float) -> int:
        """Focus the ε handle and press ←/→ until it sits on ε exactly; returns the number of key presses."""
        self.eps_handle.focus()
        target = math.log10(epsilon)
        presses = 0
        for _ in range(80):
            diff = target - self.eps_log()
            if abs(diff) < 0.025:  # within half a step (0.05 in log10)
                return presses
            self.page.keyboard.press("ArrowRight" if diff > 0 else "ArrowLeft")
            presses += 1
        raise AssertionError(f"the ε slider did not reach {epsilon} with the arrow keys (at 10^{self.eps_log()})")

    def key_steps_to(self, steps: int) -> None:
        """Focus the steps handle and press ←/→ (10 steps each) until the readout shows ``steps``."""
        self.steps_handle.focus()
        for _ in range(50):
            now = int(float(self.steps_handle.get_attribute("aria-valuenow")))
            if now == steps:
                return
            self.page.keyboard.press("ArrowRight" if steps > now else "ArrowLeft")
        raise AssertionError(f"the steps slider did not reach {steps} with the arrow keys")

    def choose_mode(self, mode: str) -> None:
        """Pick the option whose label starts with ``mode:`` in the noise-mode dropdown."""
        options = self.mode.locator("option").evaluate_all(
            "os => os.map(o => ({value: o.value, text: o.textContent.replace(/\\u00a0/g, ' ')}))")
        match = [o for o in options if o["text"].startswith(f"{mode}:")]
        assert match, f"no noise mode {mode!r} in the dropdown: {[o['text'] for o in options]}"
        self.mode.select_option(value=match[0]["value"])


def _screenshot(page, artifacts, name: str, dash: Dash | None = None) -> None:
    """The dashboard alone (readable at a glance) and, for context, the whole JupyterLab window."""
    if dash is not None:
        dash.root.scroll_into_view_if_needed()
        dash.root.screenshot(path=str(artifacts / f"{name}.png"), animations="disabled")
    page.screenshot(path=str(artifacts / f"{name}-window.png"), animations="disabled")


def _wait_until(page, js: str, what: str, timeout: float = 60, arg=None) -> None:
    """Wait for a JavaScript predicate; on timeout fail with ``what`` (what a person would have seen not happen)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(js, arg=arg, timeout=timeout * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"{what} (waited {timeout:g} s)")


def _wait_for_run(page, dash: Dash, n_rows: int, timeout: float = RUN_TIMEOUT) -> list[dict]:
    """Wait until the run ends (its row appears and Run is enabled again); return the recorded timeline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(dash.rows()) >= n_rows and not dash.run.is_disabled():
            break
        status = dash.status.inner_text()
        assert "error" not in status.lower(), f"the run failed in the dashboard: {status}"
        page.wait_for_timeout(250)
    else:
        raise AssertionError(f"the run did not finish within {timeout} s; status: {dash.status.inner_text()!r}")
    page.wait_for_timeout(300)  # the last few trait updates (report, trade-off plot) follow the row
    return page.evaluate("window.__dpsdTimeline")


def _assert_images_render(dash: Dash) -> dict:
    stats = {}
    for name, view, min_ink in (("live accuracy curve", dash.curve, 0.01),
                                ("synthetic-image grid", dash.grid, 0.05),
                                ("accuracy-vs-ε plot", dash.tradeoff, 0.01)):
        s = dash.image_stats(view)
        assert s["naturalWidth"] > 100 and s["naturalHeight"] > 100, f"{name}: image too small or broken: {s}"
        assert s["width"] > 100 and s["height"] > 100, f"{name}: image laid out with (almost) no size: {s}"
        # drawn at its own size (a crowded row must not squeeze it into an unreadable thumbnail)
        assert s["width"] >= 0.95 * s["naturalWidth"], f"{name}: shrunk to {s['width']} of {s['naturalWidth']} px: {s}"
        assert s["ink"] >= min_ink, f"{name}: the image is blank ({100 * s['ink']:.2f}% non-white pixels): {s}"
        stats[name] = s
    return stats


# ---------------------------------------------------------------------------
# the scenario
# ---------------------------------------------------------------------------
def test_01_quickstart_runs_all_cells_and_shows_the_dashboard(jupyter_lab, browser_page, artifacts):
    page = browser_page
    page.goto(jupyter_lab.lab_url(NOTEBOOK) + "&reset")  # reset: a fresh workspace, not a stored layout
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook
    page.locator("#filebrowser").wait_for(state="hidden", timeout=10_000)

    # Run ▸ Run All Cells, through the menu bar
    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    dash = Dash(page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text=re.compile("Traceback|Error"))
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while dash.root.count() == 0:
        if errors.count():
            _screenshot(page, artifacts, "01-run-all-error")
            pytest.fail(f"a cell raised while running the quickstart:\n{(errors.first.text_content() or '')[:3000]}")
        if time.monotonic() > deadline:
            _screenshot(page, artifacts, "01-run-all-timeout")
            pytest.fail(f"the dashboard did not appear within {RUN_ALL_TIMEOUT} s of Run All Cells\n"
                        f"server log:\n{jupyter_lab.log_tail()}")
        page.wait_for_timeout(500)

    dash.run.wait_for()
    assert errors.count() == 0, errors.first.inner_text()[:3000]
    assert page.get_by_text(re.compile("Error (displaying|rendering) widget")).count() == 0
    assert not dash.run.is_disabled() and dash.stop.is_disabled()
    assert dash.rows() == [] and "no runs yet" in dash.table.inner_text()
    assert dash.mode_shown().startswith("rr:")
    assert dash.eps_shown() == pytest.approx(10.0)
    # the dropdown shows its whole label, and the two bars are told apart by their labels
    assert dash.mode.evaluate(SELECT_TEXT_FITS_JS), "the noise-mode dropdown cuts its selected label"
    labels = [t.strip() for t in dash.root.locator(".widget-slider .widget-label, .widget-hprogress .widget-label")
              .all_inner_texts()]
    assert labels.count("generator steps") == 1 and labels.count("transcription") == 1, labels
    steps_max = float(dash.steps_handle.get_attribute("aria-valuemax"))
    steps_now = float(dash.steps_handle.get_attribute("aria-valuenow"))
    assert steps_now / steps_max < 0.9, "the steps slider's range hides its value at its right end"
    assert steps_max >= LONG, "the steps slider cannot reach a long run"

    # the held-out grid of section 4 shows a mix of classes, not the first 32 images of one class
    # (read the DOM's text: JupyterLab does not render cells outside the window, inner_text() would be empty)
    shown_output = page.locator(".jp-OutputArea-output", has_text="true labels shown:").first
    shown_output.scroll_into_view_if_needed()
    shown = shown_output.text_content() or ""
    assert len(re.search(r"\[(.*)\]", shown).group(1).split(",")) >= 5, shown

    # every figure the notebook drew, the live monitor of section 3 included, is a real, non-blank image
    # (the notebook renders off-screen cells lazily: walk down it so each output is laid out once)
    notebook_imgs = page.locator(".jp-Notebook .jp-OutputArea-output img")
    stats = []
    for i in range(notebook_imgs.count()):
        img = notebook_imgs.nth(i)
        img.scroll_into_view_if_needed()
        stats.append(img.evaluate(IMAGE_STATS_JS))
    assert len(stats) >= 5, f"expected the notebook's figures (data grid, live curve and grid, curve, held-out grid): {stats}"
    blank = [s for s in stats if not (s["naturalWidth"] > 100 and s["width"] > 100 and s["ink"] > 0.01)]
    assert not blank, f"{len(blank)} of the notebook's {len(stats)} figures are blank or have no size: {blank}"
    live_bar = page.locator(".jp-Notebook .jp-OutputArea-output:not(:has(.widget-dropdown)) .widget-hprogress .progress-bar")
    assert live_bar.count() == 1, "the live monitor of section 3 is missing"
    assert live_bar.evaluate("b => parseFloat(b.style.width)") == pytest.approx(100.0), "the live monitor did not finish"
    _screenshot(page, artifacts, "01-dashboard-ready", dash)


def test_02_slider_dropdown_and_run_button(browser_page, artifacts):
    page = browser_page
    dash = Dash(page)

    # ε: drag the handle most of the way, then the arrow keys to land on the grid point exactly
    dash.drag_eps_to(EPS_FIRST * 1.1)
    page.wait_for_timeout(200)
    dragged = dash.eps_shown()
    assert 12 < dragged < 40, f"dragging the ε handle right did not move it to about {EPS_FIRST:.3g} ({dragged})"
    presses = dash.key_eps_to(EPS_FIRST)
    assert presses <= 4, f"the drag landed {presses} arrow-key steps away from where it was aimed"
    expect_text(dash.eps_readout, EPS_FIRST)
    dash.key_steps_to(STEPS)
    assert int(dash.steps_readout.inner_text()) == STEPS

    # mode: through "none" first. The kernel greys ε out for it (an observer in the kernel),
    # so the slider's disabled state proves the dropdown's change reached the kernel and came back.
    dash.choose_mode("none")
    _wait_until(page, "el => el.hasAttribute('disabled')", arg=dash.eps_target.element_handle(), timeout=15,
                what="choosing mode 'none' did not grey out the ε slider: the dropdown's change got no answer from the kernel")
    dash.choose_mode(MODE_FIRST)
    _wait_until(page, "el => !el.hasAttribute('disabled')", arg=dash.eps_target.element_handle(), timeout=15,
                what=f"choosing mode {MODE_FIRST!r} did not enable the ε slider again")
    assert dash.mode_shown().startswith(f"{MODE_FIRST}:")
    _screenshot(page, artifacts, "02-controls-moved", dash)

    # Run, and watch it
    dash.root.evaluate(RECORDER_JS)
    steps = STEPS
    dash.run.click()
    _wait_until(page, "() => window.__dpsdTimeline.some(s => s.runDisabled && s.width > 0)",
                what="clicking Run started no run: the button was not disabled and the progress bar did not move")
    _screenshot(page, artifacts, "03-during-run", dash)
    timeline = _wait_for_run(page, dash, n_rows=1)
    (artifacts / "run-timeline.txt").write_text("\n".join(map(str, timeline)))

    running = [s for s in timeline if s["runDisabled"]]
    assert running, "Run was never disabled: the run did not start (or the button does not reflect it)"
    # (Run's and Stop's states are two messages from the kernel: they can render one frame apart)
    assert any(s["stopDisabled"] is False for s in running), "Stop was never enabled while the run was going on"
    partial = sorted({s["width"] for s in running if 0 < s["width"] < 100})
    assert partial, f"the progress bar never showed a partial run (widths seen: {sorted({s['width'] for s in timeline})})"
    assert any(re.search(r"step \d+/%d" % steps, s["status"] or "") for s in running), \
        "the status line never showed 'step k/N' during the run"
    assert any(s["monitorImgs"] > 0 for s in running), "no live plot or image grid appeared during the run"

    # the result
    assert float(dash.bar.evaluate("b => parseFloat(b.style.width)")) == pytest.approx(100.0)
    assert "progress-bar-success" in dash.bar.get_attribute("class")
    status = dash.status.inner_text()
    m = re.search(r"done.*student (\d+\.\d)%.*teacher (\d+\.\d)%", status)
    assert m, f"the accuracy readout did not update: {status!r}"
    rows = dash.rows()
    assert len(rows) == 1, rows
    assert rows[0][:4] == ["1", MODE_FIRST, LEARNED, f"{EPS_FIRST:.3g}"], \
        f"the runs table does not show the run as set: {rows[0]}"
    assert rows[0][5] == "none" and rows[0][7] == str(steps) and rows[0][8] == f"{m.group(1)}%", rows[0]
    assert f"epsilon = {EPS_FIRST:g} per teacher answer" in dash.report.inner_text()
    _assert_images_render(dash)
    assert not dash.run.is_disabled() and dash.stop.is_disabled()
    _screenshot(page, artifacts, "04-after-first-run", dash)


def test_03_dashboard_still_responds_after_a_run(browser_page, artifacts):
    page = browser_page
    dash = Dash(page)
    assert not dash.eps_disabled(), "the ε slider is still disabled after the run"

    before = dash.eps_log()
    dash.key_eps_to(EPS_SECOND)
    assert dash.eps_log() == pytest.approx(before - 0.8, abs=1e-6), "the ε slider did not respond to the keys"
    expect_text(dash.eps_readout, EPS_SECOND)
    dash.choose_mode(MODE_SECOND)

    previous = dash.status.inner_text().strip()
    assert previous.startswith("done")
    dash.root.evaluate(RECORDER_JS)
    dash.run.click()
    timeline = _wait_for_run(page, dash, n_rows=2)
    assert any(s["runDisabled"] for s in timeline), "the second click on Run started nothing"
    # from the click until the new run reports its first step, the old "done: …" must be gone
    start = next(i for i, s in enumerate(timeline) if s["runDisabled"])
    first_step = next(i for i, s in enumerate(timeline) if re.search(r"step \d+/", s["status"] or ""))
    stale = [s["status"] for s in timeline[start:first_step] if (s["status"] or "").strip() == previous]
    assert not stale, f"the first run's result stayed on the status line while the second started: {stale[:2]}"
    rows = dash.rows()
    assert len(rows) == 2, rows
    assert rows[1][:4] == ["2", MODE_SECOND, LEARNED, "3.16"], \
        f"the second run's row does not show the new settings: {rows[1]}"
    assert rows[1][7] == str(STEPS), rows[1]
    assert rows[0][:4] == ["1", MODE_FIRST, LEARNED, f"{EPS_FIRST:.3g}"], "the first run's row changed"
    assert re.search(r"done.*student \d+\.\d%", dash.status.inner_text())
    _assert_images_render(dash)
    assert not dash.eps_disabled()
    _screenshot(page, artifacts, "05-after-second-run", dash)


def test_04_widget_state_survives_a_page_reload(browser_page, artifacts):
    """Save, reload: the views come back from the live kernel with their state, and still work."""
    page = browser_page
    dash = Dash(page)
    before_rows = dash.rows()
    before_mode = dash.mode_shown()

    page.locator(".jp-NotebookPanel .jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.locator(".jp-mod-current.jp-mod-dirty").wait_for(state="detached", timeout=30_000)

    page.reload()
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
    dash = Dash(page)
    # the dashboard is at the end of the notebook: bring it into view, it renders when it is shown
    page.locator(".jp-NotebookPanel .jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+End")
    dash.root.wait_for(timeout=60_000)
    dash.run.wait_for(timeout=60_000)
    assert page.get_by_text(re.compile("Error (displaying|rendering) widget|model not found")).count() == 0

    assert dash.eps_shown() == pytest.approx(EPS_SECOND, rel=0.01), "the ε slider lost its position"
    assert dash.mode_shown() == before_mode, "the noise-mode dropdown lost its value"
    assert dash.rows() == before_rows, "the runs table lost rows"
    assert re.search(r"done.*student \d+\.\d%", dash.status.inner_text()), "the accuracy readout is gone"
    _assert_images_render(dash)

    # and the restored views are still wired to the kernel
    dash.choose_mode("none")
    _wait_until(page, "el => el.hasAttribute('disabled')", arg=dash.eps_target.element_handle(), timeout=15,
                what="after the reload, choosing mode 'none' did not grey out the ε slider: the restored views "
                     "are not wired to the kernel")
    dash.choose_mode(MODE_SECOND)
    _wait_until(page, "el => !el.hasAttribute('disabled')", arg=dash.eps_target.element_handle(), timeout=15,
                what=f"after the reload, choosing mode {MODE_SECOND!r} did not enable the ε slider again")
    _screenshot(page, artifacts, "06-after-reload", dash)


def test_05_stop_during_a_run_with_the_restored_widgets(browser_page, artifacts):
    """A long run, stopped with Stop: the kernel answers the page while it trains (nothing is frozen)."""
    page = browser_page
    dash = Dash(page)
    n_before = len(dash.rows())

    # type a long run into the steps readout (the slider's maximum), as a person who wants the full run would
    dash.steps_readout.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(str(LONG))
    page.keyboard.press("Enter")
    _wait_until(page, f"el => parseFloat(el.getAttribute('aria-valuenow')) === {LONG}", timeout=10,
                arg=dash.steps_handle.element_handle(), what=f"typing {LONG} into the steps readout did not move the slider")

    dash.root.evaluate(RECORDER_JS)
    dash.run.click()
    _wait_until(page, "() => window.__dpsdTimeline.some(s => s.runDisabled && "
                      f"/step ([3-9]|[1-9][0-9]+)\\/{LONG}/.test(s.status || ''))",
                what="clicking Run on the restored dashboard did not get a long run past step 3")
    # the cell that made the dashboard finished long ago: the kernel is free while the thread trains
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=15_000)
    assert dash.run.is_disabled() and dash.eps_disabled(), "controls should be locked while a run is going on"
    dash.stop.click()
    timeline = _wait_for_run(page, dash, n_rows=n_before + 1, timeout=60)
    status = dash.status.inner_text()
    assert "stopped early" in status, f"Stop did not stop the run: {status!r}"
    steps_done = max(int(m.group(1)) for s in timeline if (m := re.search(rf"step (\d+)/{LONG}", s["status"] or "")))
    assert steps_done < LONG, "the run went to the end despite Stop"
    assert not dash.eps_disabled() and not dash.run.is_disabled(), "the controls stayed locked after Stop"
    _assert_images_render(dash)
    _screenshot(page, artifacts, "07-stopped-early", dash)

    # the table should say how many steps the stopped run made, not how many were asked for
    row = dash.rows()[-1]
    assert re.match(rf"{steps_done}\b", row[7]), f"the stopped run's row shows {row[7]!r} steps, {steps_done} ran"


def read_number(readout) -> float:
    """The number a slider's readout shows, read from the DOM's text once it has some: JupyterLab skips
    rendering cells outside the window (inner_text() reads as empty there), and after a page reload the
    restored view fills its readout a moment after it appears."""
    readout.scroll_into_view_if_needed()
    _wait_until(readout.page, "el => el.textContent.trim() !== ''", arg=readout.element_handle(), timeout=30,
                what="the slider's readout stayed empty")
    return float(readout.text_content().strip())


def expect_text(readout, epsilon: float) -> None:
    """The slider's readout shows ``epsilon`` (to its 3 significant digits)."""
    shown = read_number(readout)
    assert shown == pytest.approx(epsilon, rel=0.01), f"the ε readout shows {shown}, expected {epsilon}"
