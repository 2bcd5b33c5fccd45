"""The browser harness itself: it starts this machine's Chromium, connects over DevTools and
runs script in a page. A Chromium that changes how it accepts DevTools clients fails here, in
one line, rather than inside a report test."""

from __future__ import annotations

from tests.browser import Browser


def test_the_harness_connects_to_this_machines_chromium_and_runs_script():
    with Browser(width=400, height=300) as browser:
        assert browser.version().startswith(("HeadlessChrome/", "Chrome/"))
        browser.open("data:text/html,<title>ok</title><p id=x>41</p>")
        assert browser.evaluate("document.title + document.getElementById('x').textContent") == "ok41"
        assert browser.errors() == []
