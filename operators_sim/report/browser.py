"""Load a report in headless Chromium: a full-page screenshot and every
console error, uncaught exception and fetch the page made.

Chromium is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: it reads commands on fd 3 and writes on fd 4,
each message JSON ended by a NUL byte), so nothing beyond the browser
itself is needed: no port, no driver, no downloaded browser. Debian's
package is ``chromium``; ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1000  # CSS pixels: the report's 62em column with a margin


class BrowserError(RuntimeError):
    """Chromium could not be started, or did not answer in time."""


@dataclass
class Rendering:
    """What loading the page showed."""

    screenshot: Path
    height: int  # of the whole page, CSS pixels
    errors: list[str] = field(default_factory=list)  # console errors, exceptions
    fetched: list[str] = field(default_factory=list)  # URLs other than the file itself


def find_browser() -> str | None:
    """The path of a Chromium on PATH, or None."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return None


class _Pipe:
    """The DevTools protocol over Chromium's pipe: commands and their answers,
    with the events that arrive meanwhile kept in ``events``."""

    def __init__(self, send: int, receive: int, deadline: float) -> None:
        self.send_fd, self.receive_fd, self.deadline = send, receive, deadline
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        except OSError as error:
            raise BrowserError(f"chromium is gone: {error}") from None
        while True:
            answer = self.read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self.read())

    def read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.receive_fd], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self.receive_fd, 1 << 16)
            if not chunk:
                raise BrowserError("chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded


def render(
    page: Path, screenshot: Path, browser: str | None = None, timeout: float = 60.0
) -> Rendering:
    """Load ``page`` (a local HTML file), write a full-page PNG to ``screenshot``."""
    browser = browser or find_browser()
    if browser is None:
        raise BrowserError(f"no browser found (looked for {', '.join(BROWSERS)})")
    to_browser, commands = os.pipe()  # the browser reads fd 3
    answers, from_browser = os.pipe()  # and writes fd 4
    # Its ends above 9, so that "3<&N 4>&M" never reads an fd it has just
    # overwritten (os.pipe may well hand out 3 or 4); bash, as dash takes
    # single-digit fds only.
    to_browser, from_browser = _above_nine(to_browser), _above_nine(from_browser)
    profile = tempfile.mkdtemp(prefix="ceir-report-browser-")
    log = Path(profile) / "stderr.log"
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start;
    # the page is our own file.
    command = [
        *("bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', browser),
        *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
        *("--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run"),
        "about:blank",
    ]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    os.close(to_browser)
    os.close(from_browser)
    try:
        pipe = _Pipe(commands, answers, time.monotonic() + timeout)
        return _load(pipe, page.resolve(), screenshot)
    except BrowserError as error:
        said = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BrowserError(f"{error}; {browser} said: {' | '.join(said) or 'nothing'}") from None
    finally:
        os.close(commands)
        os.close(answers)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def _load(pipe: _Pipe, page: Path, screenshot: Path) -> Rendering:
    target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
    session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        pipe.call(f"{domain}.enable", session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=WIDTH,
        height=800,
        deviceScaleFactor=1,
        mobile=False,
    )
    url = page.as_uri()
    pipe.call("Page.navigate", session, url=url)
    pipe.wait_for("Page.loadEventFired")
    height = int(pipe.call("Page.getLayoutMetrics", session)["cssContentSize"]["height"])
    shot = pipe.call(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
    )
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    rendering = Rendering(screenshot, height)
    for event in pipe.events:
        _collect(rendering, event, url)
    pipe.call("Browser.close")
    return rendering


def _collect(rendering: Rendering, event: dict[str, Any], url: str) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text", "")
        rendering.errors.append(f"exception: {text}")
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        words = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        rendering.errors.append(f"console.{params['type']}: {words}")
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        rendering.errors.append(f"log: {params['entry'].get('text', '')}")
    elif method == "Network.requestWillBeSent":
        requested = params["request"]["url"]
        if requested != url and not requested.startswith("data:"):
            rendering.fetched.append(requested)
