"""Headless Chromium (the Debian packages `chromium` and `chromium-driver`) driven by Selenium.

`make test` installs the packages (see the Makefile's `system` step); this machine's network is
closed, so the browser starts with everything that would reach out switched off, and with a
fresh profile each time.

Run as a script, it saves a screenshot of a page after SECONDS (default 3) of live updates:
`python -m tests.browser.chromium URL PNG [SECONDS]`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def missing() -> str | None:
    """Why the browser cannot start here, with the command that fixes it; None if it can."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        return f"{', '.join(absent)} missing: run `{INSTALL}` (or `make test`, which does)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with its own profile, recording the page's console."""
    profile = tempfile.mkdtemp(prefix="herd-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given, so Selenium never tries to download one.
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(browser: webdriver.Chrome) -> list[str]:
    """The page's console errors since the last call."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(url: str, path: Path, settle_s: float = 3.0) -> None:
    """Save a full-height screenshot of `url` after `settle_s` of live updates."""

    with chromium(height=1700) as browser:
        browser.get(url)
        time.sleep(settle_s)  # a picture of a live page: let a few snapshots arrive
        browser.save_screenshot(str(path))


if __name__ == "__main__":
    screenshot(sys.argv[1], Path(sys.argv[2]), *(float(a) for a in sys.argv[3:4]))
