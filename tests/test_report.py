"""`ctdenoise report` on the session's pushed run, checked in a real headless Chromium
(tests/browser.py): the page loads with no console error and fetches nothing, its window
buttons switch the panels, a screenshot of it is not blank, and its model card says what
the run did."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ctdenoise.app.report import json_for_script
from tests.browser import Browser
from tests.pipeline_helpers import ctdenoise


@pytest.fixture(scope="module")
def report(pushed_run, tmp_path_factory):
    run_root, summary, _ = pushed_run
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = ctdenoise("report", "--root", str(run_root), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out, summary, result.stdout


def test_report_loads_cleanly_fetches_nothing_and_its_buttons_switch_the_windows(report):
    out, _, stdout = report
    assert f"report: written to {out}" in stdout
    with Browser() as browser:
        browser.open(out.as_uri())
        visible = "[...document.querySelectorAll('img.panel')].filter(i => !i.hidden).map(i => i.dataset.window)"
        assert browser.evaluate(visible) == ["soft tissue"]
        browser.evaluate("document.querySelector(\"button[data-window='lung']\").click()")
        assert browser.evaluate(visible) == ["lung"]
        assert (
            browser.evaluate("document.querySelector(\"button[data-window='lung']\").getAttribute('aria-pressed')")
            == "true"
        )
        browser.evaluate("document.querySelector(\"button[data-window='bone']\").click()")
        assert browser.evaluate(visible) == ["bone"]
        assert browser.evaluate("document.querySelectorAll('svg polyline').length") >= 1
        assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        picture = Image.open(io.BytesIO(browser.screenshot())).convert("L")
        errors, requested = browser.errors(), browser.requested()
    assert errors == []
    assert [url for url in requested if not url.startswith("data:")] == [out.as_uri()]
    pixels = np.asarray(picture, dtype=np.float32)
    assert picture.size[0] >= 800 and pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, images and charts


def test_model_card_says_what_the_run_did(report):
    out, summary, _ = report
    page = out.read_text()
    card = json.loads(page.split("<script type=application/json id=model-card>")[1].split("</script>")[0])
    assert card["model_details"]["version"]["name"] == summary["push"]["version"]
    assert card["model_parameters"]["model_architecture"] == "cycle_identity"
    data = {d["name"]: d for d in card["model_parameters"]["data"]}
    assert set(data["eval"]["patients"]) == set(summary["evaluation"]["per_patient"]) == {"SIM002"}
    assert set(data["train"]["patients"]) == {"SIM001", "SIM003"}
    assert data["train"]["patients"]["SIM001"] == {"ldct": 3, "ndct": 3}
    assert card["gate"] == {"blessed": True, "failures": [], "pushed": True}
    rows = {
        (m["slice"], m["role"], m["type"]): m["value"] for m in card["quantitative_analysis"]["performance_metrics"]
    }
    assert rows[("SIM002", "ldct", "psnr")] == pytest.approx(
        summary["evaluation"]["per_patient"]["SIM002"]["ldct"]["psnr"]
    )
    assert "not for diagnostic use" in page.lower() and "Known limitations" in page
    assert "http://" not in page and "https://" not in page


def test_report_without_a_run_is_one_line(tmp_path):
    result = ctdenoise("report", "--root", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert result.returncode == 1 and result.stderr.strip() == (
        f"ctdenoise: error: {tmp_path}: no ML Metadata here; run `ctdenoise run` first"
    )
    assert not (tmp_path / "r.html").exists()


def test_the_browser_sees_console_errors_exceptions_and_requests():
    """What the page test relies on can fail: a page that logs an error, throws and fetches is seen doing so."""
    page = (
        "data:text/html,<script>console.error('broken'); fetch('http://127.0.0.1:9/x').catch(() => 0);"
        "throw new Error('thrown')</script>"
    )
    with Browser() as browser:
        browser.open(page)
        browser.evaluate("new Promise(done => setTimeout(done, 0))")  # let the fetch be issued
        errors, requested = browser.errors(), browser.requested()
    assert any("broken" in e for e in errors) and any("thrown" in e for e in errors)
    assert "http://127.0.0.1:9/x" in requested


def test_names_that_look_like_markup_cannot_break_the_page_script(tmp_path):
    """A patient folder called `<!--<script>` once put the HTML parser in its escaped-script
    state: the page's inline script became text and the model card stopped parsing."""
    hostile = "<!--<script>a</script>&amp;"
    page = tmp_path / "page.html"
    page.write_text(
        "<!doctype html><title>x</title>"
        f"<script type=application/json id=card>{json_for_script({'patient': hostile})}</script>"
        "<script>document.title = JSON.parse(document.getElementById('card').textContent).patient</script>"
    )
    with Browser(width=400, height=300) as browser:
        browser.open(page.as_uri())
        assert browser.evaluate("document.title") == hostile
        assert browser.errors() == []
