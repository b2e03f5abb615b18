"""Notebook 04 in a real JupyterLab and Chromium: the mechanism explorer reads well and its reports say what happened.

1. Run ▸ Run All Cells on ``04_dp_labels.ipynb`` (fast mode): no cell raises, and the `label`
   section's report says that every class was kept (no prior was given), not "top-k of the prior";
2. the explorer's figure is drawn at its own size, next to (or above) its long privacy report,
   and stays so after moving ε to 0.5 with the arrow keys.

Screenshots go to the artifacts folder, as for the quickstart scenario.
"""

from __future__ import annotations

import re
import time

import pytest

from test_quickstart_dashboard import IMAGE_STATS_JS, _wait_until

pytestmark = [pytest.mark.scenario]

NOTEBOOK = "04_dp_labels.ipynb"
RUN_ALL_TIMEOUT = 300
EXPLORER = ".jp-OutputArea-output:has(.widget-slider:has-text('ε per answer'))"


def _figure_stats(explorer):
    img = explorer.locator(".widget-output img")
    assert img.count() == 1, f"expected the explorer's one figure, found {img.count()}"
    return img.evaluate(IMAGE_STATS_JS)


def _assert_full_size(stats, when):
    assert stats["naturalWidth"] >= 400, f"{when}: the figure itself is small: {stats}"
    assert stats["width"] >= 0.95 * stats["naturalWidth"], \
        f"{when}: the figure is squeezed to {stats['width']} of its {stats['naturalWidth']} px: {stats}"
    assert stats["ink"] > 0.01, f"{when}: the figure is blank: {stats}"


def test_01_run_all_and_read_the_reports(jupyter_lab, browser_page, artifacts):
    page = browser_page
    page.goto(jupyter_lab.lab_url(NOTEBOOK) + "&reset")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    page.keyboard.press("Control+b")
    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    explorer = page.locator(EXPLORER)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text=re.compile("Traceback|Error"))
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while explorer.count() == 0 or explorer.locator(".widget-output img").count() == 0:
        if errors.count():
            pytest.fail(f"a cell raised while running notebook 04:\n{(errors.first.text_content() or '')[:3000]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the explorer did not appear within {RUN_ALL_TIMEOUT} s\n{jupyter_lab.log_tail()}")
        page.wait_for_timeout(500)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
    assert errors.count() == 0

    # section 3 releases without a prior: its report must say every class was kept
    # (JupyterLab skips rendering cells outside the window, where inner_text() reads as empty:
    # bring the report into view and read the DOM's text itself)
    label_output = page.locator(".jp-OutputArea-output", has_text="noise mode: label").first
    label_output.scroll_into_view_if_needed()
    label_report = label_output.text_content() or ""
    assert "classes kept: all (no prior was given" in label_report, label_report
    assert "top-k = 2 classes of the prior" not in label_report
    # and every report names the noise source; the lesson's reproducible noise carries its warning
    assert "noise: secret" in label_report
    assert page.locator(".jp-OutputArea-output", has_text="WARNING: REPRODUCIBLE NOISE").count() >= 1

    explorer.scroll_into_view_if_needed()
    _assert_full_size(_figure_stats(explorer), "after Run All")
    explorer.screenshot(path=str(artifacts / "04-explorer.png"), animations="disabled")


def test_02_the_figure_keeps_its_size_when_epsilon_moves(browser_page, artifacts):
    page = browser_page
    explorer = page.locator(EXPLORER)
    before = explorer.locator(".widget-output img").get_attribute("src")
    root = explorer.element_handle()
    # type the new ε into the slider's readout, as a learner who wants exactly 0.5 would
    explorer.locator(".widget-slider .widget-readout").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("0.5")
    page.keyboard.press("Enter")
    # wait for the kernel's new report and figure
    # (the output re-renders its <img> as a new element: look it up afresh each time)
    _wait_until(page, "([root, src]) => { const img = root.querySelector('.widget-output img'); "
                      "return img !== null && img.getAttribute('src') !== src && "
                      "/epsilon = 0\\.50?\\d* per teacher answer/.test(root.textContent); }", timeout=90,
                arg=[root, before], what="moving ε to 0.5 did not redraw the explorer's figure and report")
    page.wait_for_timeout(500)
    _assert_full_size(_figure_stats(explorer), "after moving ε to 0.5")
    report = explorer.locator(".widget-output").filter(has_text="unit of privacy").inner_text()
    assert re.search(r"epsilon = 0\.50?\d* per teacher answer", report), report[:600]
    explorer.screenshot(path=str(artifacts / "04-explorer-eps0.5.png"), animations="disabled")
