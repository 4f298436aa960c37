"""Headless Chromium driven over the Chrome DevTools Protocol, with websocket-client only.

``Chromium(executable, user_data_dir).start()`` launches a fresh browser (its own profile
folder, no network services of its own) and ``.page()`` returns a ``Page`` to drive:
``navigate``, ``evaluate`` (JavaScript, promises awaited, values returned as JSON),
``wait_for`` (poll an expression until it is truthy) and ``screenshot``. Console
messages and uncaught exceptions are kept in ``Page.console``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--autoplay-policy=no-user-gesture-required",
)


class BrowserError(RuntimeError):
    pass


class Page:
    def __init__(self, ws_url: str, timeout: float = 60.0):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.console: list[str] = []
        self.send("Runtime.enable")
        self.send("Page.enable")

    def _record(self, message: dict) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")

    def send(self, method: str, timeout: float = 60.0, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._record(message)
            if time.monotonic() > deadline:
                raise BrowserError(f"{method}: no answer within {timeout} s")

    def evaluate(self, expression: str, timeout: float = 60.0):
        """The JSON value of a JavaScript expression (an async function body may ``await``)."""
        result = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=f"(async () => {{ {expression} }})()",
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(f"return ({expression});", timeout=max(1.0, deadline - time.monotonic()))
            except BrowserError as error:
                last = error
            else:
                if last:
                    return last
            time.sleep(interval)
        raise BrowserError(
            f"waited {timeout} s for {expression!r}; last value {last!r}; console tail {self.console[-10:]}"
        )

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class Chromium:
    def __init__(self, executable: str, user_data_dir: Path, width: int = 1600, height: int = 1000):
        self.executable = executable
        self.user_data_dir = Path(user_data_dir)
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, timeout: float = 60.0) -> "Chromium":
        self.user_data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.user_data_dir.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [
                self.executable,
                *FLAGS,
                f"--user-data-dir={self.user_data_dir}",
                "--remote-debugging-port=0",
                f"--window-size={self.size[0]},{self.size[1]}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        port_file = self.user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}; see {log.name}")
            if port_file.is_file() and port_file.read_text().strip():
                self.port = int(port_file.read_text().split()[0])
                return self
            time.sleep(0.2)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout} s")

    def page(self) -> Page:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as answer:
            targets = json.loads(answer.read())
        target = next(t for t in targets if t.get("type") == "page")
        return Page(target["webSocketDebuggerUrl"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=10)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
