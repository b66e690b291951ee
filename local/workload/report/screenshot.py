"""A PNG of a report page as headless Chromium draws it: proof the page renders in a real browser.

Chromium is the Debian package (`apt-get install -y chromium`); `make test` and `make report-screenshot`
install it when it is missing and they run as root. Each call gets a profile directory of its own, so
screenshots can run side by side (pytest -n 2) without sharing Chromium's lock.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "chromium"
WINDOW = (1400, 2400)


class ChromiumMissingError(RuntimeError):
    """No `chromium` on PATH: the message says how to install it."""


def screenshot(page: Path, png: Path, window: tuple[int, int] = WINDOW, timeout_seconds: float = 180) -> Path:
    """Load `page` from the file system in headless Chromium and save what it drew at `window` size as `png`."""
    binary = shutil.which(CHROMIUM)
    if binary is None:
        raise ChromiumMissingError(
            "chromium is not installed: `sudo apt-get install -y chromium` (Debian), or run `make chromium` as root"
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="rideonce-chromium-") as profile:
        completed = subprocess.run(  # noqa: S603 - a fixed binary and flags; the paths are ours
            [
                binary,
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                f"--screenshot={png.resolve()}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )
    if completed.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium drew no screenshot (exit {completed.returncode}): {completed.stderr[-2000:]}")
    return png
