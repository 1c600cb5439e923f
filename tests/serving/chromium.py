"""Headless Chromium (Debian's package) driven over the DevTools protocol with aiohttp's websocket
client: open a page, run JavaScript in it, collect its console errors and every request it makes,
take a screenshot. No browser download, no extra package: `make test` installs `chromium`.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

# Flags that keep Chromium off the network (this machine has none) and quiet as root in a container.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
         "--metrics-recording-only", "--hide-scrollbars", "--mute-audio"]


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise AssertionError("Chromium is not installed: `make test` installs it (Debian's `chromium` package), "
                             "or `apt-get install -y chromium`")
    return found


class Browser:
    """One headless Chromium with one page; use as ``async with Browser() as page``."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.console: list[dict] = []       # console messages, uncaught exceptions, browser log entries
        self.requests: list[str] = []       # every URL the page asked for
        self._events: dict[str, asyncio.Event] = {}
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0

    async def __aenter__(self) -> "Browser":
        self.process = subprocess.Popen([chromium_binary(), *FLAGS, f"--user-data-dir={self.profile}",
                                         "--remote-debugging-port=0", f"--window-size={self.width},{self.height}",
                                         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = await self._devtools_port()
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc) -> None:
        self._reader.cancel()
        await self.socket.close()
        await self.session.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def _devtools_port(self, timeout_s: float = 60) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker.exists() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            if self.process.poll() is not None:
                raise AssertionError(f"Chromium exited with status {self.process.returncode}")
            await asyncio.sleep(0.1)
        raise AssertionError("Chromium did not open its DevTools port")

    async def _read(self) -> None:
        async for message in self.socket:
            data = message.json()
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future and not future.done():
                    if "error" in data:
                        future.set_exception(RuntimeError(f"{data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                self.console.append({"level": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                self.console.append({"level": "exception", "text": details.get("exception", {}).get(
                    "description", details.get("text", ""))})
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                self.console.append({"level": entry.get("level"), "text": entry.get("text", ""),
                                     "url": entry.get("url", "")})
            elif method == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif method == "Page.loadEventFired":
                self._event("load").set()

    def _event(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    async def send(self, method: str, **params) -> dict:
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self.socket.send_json({"id": self._next_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 60)

    async def open(self, url: str, timeout_s: float = 60) -> None:
        self._event("load").clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._event("load").wait(), timeout_s)

    async def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:80]}... threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 60):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout_s} s: {expression}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        """The whole page, however long, as a PNG."""
        height = await self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=int(height),
                        deviceScaleFactor=1, mobile=False)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


async def _screenshot(url: str, out: Path, width: int, timeout_s: float) -> None:
    """The dashboard once it has drawn its first refresh (or after ``timeout_s``)."""
    async with Browser(width=width) as browser:
        await browser.open(url)
        try:
            await browser.wait_for("(document.querySelector('#updated') || {textContent: 'updated'})"
                                   ".textContent.startsWith('updated')", timeout_s)
        except AssertionError:
            print(f"the page had not drawn after {timeout_s} s; taking the screenshot anyway")
        await asyncio.sleep(0.5)
        await browser.screenshot(out)
        for entry in browser.console:
            print(f"console {entry['level']}: {entry['text']} {entry.get('url', '')}")


if __name__ == "__main__":
    # python -m tests.serving.chromium http://127.0.0.1:5001/dashboard dashboard.png [width] [timeout seconds]
    import sys

    asyncio.run(_screenshot(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1400,
                            float(sys.argv[4]) if len(sys.argv) > 4 else 120.0))
    print(f"wrote {sys.argv[2]}")
