"""Headless Chromium driven over the Chrome DevTools Protocol: just enough to use a page.

Debian's ``chromium`` package, no webdriver and no download: Chromium is
started with ``--remote-debugging-port=0``, writes the port it chose to
``DevToolsActivePort`` in its (fresh, empty) profile directory, and is driven
over one websocket with flat sessions. A person's actions are real input
events (a mouse click at an element's centre, typed text), not DOM shortcuts.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.waiting import poll

REQUIRE_ENV = "RECEIVER_TEST_REQUIRE_CHROMIUM"
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no network but 127.0.0.1 here
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]


def chromium_or_skip() -> str:
    """Chromium's path; skips when it is missing, unless RECEIVER_TEST_REQUIRE_CHROMIUM=1."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (apt-get install chromium)"
    if os.environ.get(REQUIRE_ENV, "").strip() == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
    pytest.skip(f"{message}; {REQUIRE_ENV}=1 turns this skip into a failure")


class CdpError(Exception):
    pass


class Browser:
    """One Chromium process with a fresh profile, and one page (tab) in it; a context manager."""

    def __init__(self, executable: str, workdir: Path, width: int = 1280, height: int = 900):
        self.executable = executable
        self.profile = workdir / "chromium-profile"
        self.width, self.height = width, height
        self.log_path = workdir / "chromium.log"
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self.events: list[dict[str, Any]] = []
        self.dialogs: list[dict[str, Any]] = []  # alert(), confirm(): kept, never cleared
        self.session = ""

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.profile.mkdir()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    *FLAGS,
                    f"--user-data-dir={self.profile}",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._stack.callback(self._stop)
        self.ws = self._stack.enter_context(self._connect())
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.page(f"{domain}.enable")
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _connect(self, timeout: float = 30.0) -> ClientConnection:
        port_file = self.profile / "DevToolsActivePort"

        def port_and_path() -> list[str]:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}:\n{self.log()}")
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            return [line.strip() for line in lines[:2]]

        port, path = poll(
            port_and_path,
            lambda lines: len(lines) == 2 and all(lines),
            what=f"chromium to write {port_file}",
            timeout=timeout,
            context=self.log,
        )
        return connect(f"ws://127.0.0.1:{port}{path}", max_size=64 * 1024 * 1024, open_timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    # -- the protocol ------------------------------------------------------------------

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + 30
        while True:
            doc = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if doc.get("id") == msg_id:
                if "error" in doc:
                    raise CdpError(f"{method}: {doc['error']}")
                result: dict[str, Any] = doc.get("result", {})
                return result
            self._note(doc)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self.session, **params)

    def wait_event(
        self,
        method: str,
        timeout: float = 15.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        """The first event ``method`` seen since ``clear_events`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for doc in self.events:
                if doc["method"] == method and where(doc.get("params", {})):
                    return doc
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"no {method} event in {timeout} s")
            try:
                doc = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            self._note(doc)

    def _note(self, doc: dict[str, Any]) -> None:
        if "method" not in doc:
            return
        self.events.append(doc)
        if doc["method"] == "Page.javascriptDialogOpening":
            self.dialogs.append(doc)
            # Dismiss it, or the page would hang here and the test would only time out.
            self.ws.send(json.dumps({"id": next(self._ids), "sessionId": self.session,
                                     "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": False}}))  # fmt: skip

    def clear_events(self) -> None:
        self.events.clear()

    # -- what a person does ------------------------------------------------------------

    def goto(self, url: str) -> None:
        self.clear_events()
        self.page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A left click at the centre of the element, as a mouse would."""
        box = self.js(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.page(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                clickCount=1,
            )  # fmt: skip

    def type(self, text: str) -> None:
        self.page("Input.insertText", text=text)

    def click_and_wait(self, selector: str) -> None:
        """Click, then wait for the page it leads to to finish loading."""
        self.clear_events()
        self.click(selector)
        self.wait_event("Page.loadEventFired")

    def cookies(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page("Network.getCookies")["cookies"]
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
