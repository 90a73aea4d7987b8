"""What an archivist sees: headless Chromium opens the ingest run's page on the local Prefect server, finds the
run summary artifact among the run's artifacts and reads the counts in it; screenshots are kept with the test."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from archive.publish import committed_manifests
from archive.storage import open_store
from tests.test_service import seeds_run, shared_service

pytestmark = pytest.mark.flow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_SECONDS = 45


class Browser:
    """Debian's chromium, headless, driven over the DevTools protocol (a websocket; no browser download)."""

    def __init__(self, profile: Path):
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=1400,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active_port = profile / "DevToolsActivePort"  # chromium writes the port it chose here
        deadline = time.monotonic() + 30
        while not (active_port.exists() and len(active_port.read_text().splitlines()) >= 2):
            assert self.process.poll() is None, f"chromium exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port in 30 s"
            time.sleep(0.1)
        port = int(active_port.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ids = itertools.count(1)
        self.call("Page.enable")

    def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == message_id:  # events in between are not needed
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''")

    def wait_for_text(self, *needles: str, seconds: float = PAGE_SECONDS) -> str:
        deadline = time.monotonic() + seconds
        while True:
            text = self.text()
            if all(needle in text for needle in needles):
                return text
            assert time.monotonic() < deadline, \
                f"{needles} not on {self.evaluate('location.href')} after {seconds} s:\n{text}"
            time.sleep(0.25)

    def click(self, script_finding_element: str) -> str:
        """Click the element the script returns; its outer HTML (start) for the failure message."""
        return self.evaluate(f"(() => {{ const el = {script_finding_element}; if (!el) return null; "
                             "el.scrollIntoView({block: 'center'}); el.click(); "
                             "return el.outerHTML.slice(0, 200); })()")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="session")
def service(request, tmp_path_factory):
    return shared_service(request, tmp_path_factory)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; `make test` installs it)")
    browser = Browser(tmp_path / "chromium-profile")
    yield browser
    browser.close()


def test_the_run_page_shows_the_summary_artifact_with_the_counts(service, seeds_dir, browser, tmp_path):
    deployment_run, manifest = seeds_run(service, seeds_dir)
    run_id, counts = manifest["run_id"], manifest["counts"]
    summary_key = f"ingest-summary-{run_id.lower()}"

    # The page of the run the deployment started (whose ingest subflow committed the manifest), its Artifacts tab.
    browser.call("Page.navigate", url=f"{service.url}/runs/flow-run/{deployment_run.id}")
    browser.wait_for_text("Completed", "Artifacts")
    tab = "[...document.querySelectorAll('[role=tab], button, li')].find(e => e.innerText.trim() === 'Artifacts')"
    assert browser.click(tab), "no Artifacts tab on the run page"
    browser.wait_for_text(summary_key, f"Run {run_id}: summary")
    card = (f"[...document.querySelectorAll('a')].find(a => a.innerText.includes('{summary_key}'))")
    browser.evaluate(f"{card}.scrollIntoView({{block: 'center'}})")
    run_page = browser.screenshot(tmp_path / "flow-run-artifacts.png")

    # The summary artifact, opened from its card: the markdown rendered, with the counts.
    assert browser.click(card), f"no link to {summary_key} on the run page"
    text = browser.wait_for_text(f"Ingest run {run_id}: committed", "documents")
    for name in ("files", "documents", "duplicates", "quarantined", "skipped"):
        assert re.search(rf"^{name}\s+{counts[name]}$", text, re.MULTILINE), (name, counts[name], text)
    assert f"runs/{run_id}.json" in text and service.store in text
    summary_page = browser.screenshot(tmp_path / "run-summary-artifact.png")

    for shot in (run_page, summary_page):
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")


def test_the_page_that_watch_prints_carries_the_artifacts_and_a_readable_quarantine_table(service, seeds_dir,
                                                                                           browser, tmp_path):
    source, dest = tmp_path / "batch", tmp_path / "store"
    shutil.copytree(seeds_dir, source)
    (source / "blank page.txt").write_bytes(b"")
    (source / "telegram.dat").write_bytes(bytes(range(256)) * 4)
    # As an archivist starts a run from the command line: the URL it prints is the page they open.
    printed = service._prefect("deployment", "run", "ingest/ingest", "-p", f"source={source}", "-p", f"dest={dest}",
                               "--watch", "--watch-interval", "1", timeout=300)
    url = re.search(r"http://127\.0\.0\.1:\d+/runs/flow-run/[0-9a-f-]{36}", printed)
    assert url, printed
    browser.call("Page.navigate", url=url.group(0))
    browser.wait_for_text("Completed", "Artifacts")
    tab = "[...document.querySelectorAll('[role=tab], button, li')].find(e => e.innerText.trim() === 'Artifacts')"
    assert browser.click(tab), "no Artifacts tab on the run page"
    (manifest,) = committed_manifests(open_store(str(dest)))
    key = manifest["run_id"].lower()
    browser.wait_for_text(*(f"ingest-{kind}-{key}" for kind in ("counts", "quarantine", "summary", "progress")))
    browser.screenshot(tmp_path / "watched-run-artifacts.png")

    card = f"[...document.querySelectorAll('a')].find(a => a.innerText.includes('ingest-quarantine-{key}'))"
    assert browser.click(card), "no link to the quarantine table"
    detail = "Unidentified binary (application/octet-stream): no text extractor for this format"
    text = browser.wait_for_text("telegram.dat", "blank page.txt", detail)
    assert "the file has no bytes" in text
    shot = browser.screenshot(tmp_path / "quarantine-table.png")
    print(f"screenshot: {shot}")
    # Readable in a 1400 px window: the whole detail shows, nothing around it scrolls sideways or cuts it off.
    overflowing = browser.evaluate(
        f"[...document.querySelectorAll('*')].filter(e => (e.innerText || '').includes('{detail}')"
        " && e.scrollWidth > e.clientWidth + 1).map(e => `${e.tagName}.${e.className}: ${e.scrollWidth} > "
        "${e.clientWidth}`)")
    assert overflowing == [], overflowing
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
