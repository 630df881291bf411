#!/usr/bin/python3
"""The web page of `qkv serve` in a real browser: headless Chromium driven over the DevTools
protocol (Debian's chromium and python3-websocket; CI has no npm).

The test types into the page and presses its buttons with real input events, then checks that
what the page shows equals what the command line prints for the same model and settings:
  web_page_test.py --qkv PATH --make-models PATH --artifacts DIR
Exit 0: passed, 1: failed, 77: skipped (no chromium).
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

SKIP = 77
STEP_TIMEOUT = 60  # seconds any one wait may take: the hang guard


class Failure(Exception):
    pass


def wait_for(what, check, timeout=STEP_TIMEOUT):
    """Polls check() until it returns something truthy; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise Failure(f"timed out after {timeout} s waiting for {what}")


def run(args, stdin=None):
    """Runs a command to completion and returns its stdout; fails with its stderr."""
    r = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if r.returncode != 0:
        raise Failure(f"{' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log):
    """Starts a process in its own process group, so that stop() ends its children too (the
    chromium wrapper script starts the browser, which starts its helpers)."""
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process):
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def write_png(path, width, height):
    """An RGB PNG of a colour gradient, written by hand (no imaging library in CI)."""
    rows = b"".join(
        b"\0" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 128))
        for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class DevTools:
    """A page's DevTools protocol session: commands answered in order, events kept."""

    def __init__(self, url):
        import websocket  # python3-websocket
        self.ws = websocket.create_connection(url, timeout=STEP_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:  # each recv also times out: the hang guard
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise Failure(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise Failure(f"{method}: no answer")

    def eval(self, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise Failure(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def page_errors(self):
        """Uncaught exceptions and console errors of the page so far."""
        self.send("Runtime.evaluate", expression="0")  # collects the events sent before
        errors = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                errors.append(e["params"]["exceptionDetails"].get("text"))
            elif e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                errors.append(str(e["params"]["args"]))
        return errors

    def click(self, element_id):
        """A left click with the mouse at the middle of the element, as a user's."""
        box = self.eval(f"""(() => {{
            const e = document.getElementById({json.dumps(element_id)});
            e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect();
            return r.width > 0 && r.height > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null;
        }})()""")
        if box is None:
            raise Failure(f"#{element_id} is not visible")
        x, y = box
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def type(self, element_id, text):
        """Clicks into a field, selects what it holds (Ctrl+A) and types text over it."""
        self.click(element_id)
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key="a", code="KeyA", modifiers=2,
                      windowsVirtualKeyCode=65, commands=["selectAll"] if kind != "keyUp" else [])
        self.send("Input.insertText", text=text)

    def text(self, element_id):
        return self.eval(f"document.getElementById({json.dumps(element_id)}).textContent")

    def start_call(self, panel):
        """Clears the panel's state, so that an earlier call's cannot answer wait_call."""
        self.eval(f"delete document.getElementById('panel-{panel}').dataset.state")

    def wait_call(self, panel):
        """Waits for the panel's call to end: "done" or "error"."""
        state = f"document.getElementById('panel-{panel}').dataset.state"
        return wait_for(f"the {panel} panel's answer",
                        lambda: self.eval(f"['done', 'error'].includes({state}) && {state}"))

    def press(self, button_id, panel):
        """Clicks a panel's button and waits for the call it makes to end."""
        self.start_call(panel)
        self.click(button_id)
        return self.wait_call(panel)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


def check_equal(what, got, expected):
    if got != expected:
        raise Failure(f"{what}: the page shows {got!r}, the command line {expected!r}")
    print(f"ok: {what}: {got!r}")


def test_translate(page, qkv, model_dir):
    sentence = "En el principio creó Dios los cielos y la tierra."
    expected = run([qkv, "translate", "--model-dir", model_dir, "--beam", "3"], sentence + "\n")
    page.click("tab-translate")
    page.type("translate-input", sentence)
    page.type("translate-beam", "3")
    check_equal("translate state", page.press("translate-button", "translate"), "done")
    check_equal("translation", page.text("translate-output"), expected.rstrip("\n"))


def test_translate_error(page):
    # A server error (a beam over the limit, past the field's own check) is shown in the page.
    page.eval("document.getElementById('translate-beam').removeAttribute('max')")
    page.type("translate-beam", "1000")
    check_equal("translate state, beam 1000", page.press("translate-button", "translate"),
                "error")
    if not page.text("translate-error").strip():
        raise Failure("the server's error for beam 1000 is not shown")
    print(f"ok: error shown: {page.text('translate-error')!r}")
    page.type("translate-beam", "3")


def test_generate(page, qkv, model_dir):
    prompt, tokens = "In the", "16"
    expected = run([qkv, "generate", "--model-dir", model_dir, "--prompt", prompt,
                    "--temperature", "0", "--max-new-tokens", tokens])
    page.click("tab-generate")
    page.type("generate-prompt", prompt)
    page.type("generate-max-tokens", tokens)
    page.type("generate-temperature", "0")
    check_equal("generate state", page.press("generate-button", "generate"), "done")
    # The command line prints the prompt, then the continuation and a newline.
    check_equal("generation", prompt + page.text("generate-output"), expected[:-1])


def test_classify(page, qkv, model_dir, image):
    cli = run([qkv, "classify", "--model-dir", model_dir, "--top-k", "5", image])
    expected = [line.split()[::-1] for line in cli.splitlines()[1:]]  # [label, "61.00%"]
    page.click("tab-classify")
    document = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", nodeId=document, selector="#classify-file")["nodeId"]
    page.start_call("classify")
    page.send("DOM.setFileInputFiles", files=[image], nodeId=node)
    check_equal("classify state", page.wait_call("classify"), "done")
    rows = page.eval("""[...document.querySelectorAll('#classify-output li')].map(
        (li) => [li.querySelector('.label').textContent, li.querySelector('.percent').textContent])""")
    check_equal("top class", rows[0], expected[0])
    check_equal("classes", rows, expected)
    wait_for("the preview", lambda: page.eval(
        "document.getElementById('classify-preview').naturalWidth > 0"))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--qkv", required=True)
    p.add_argument("--make-models", required=True, help="tests/make_random_models")
    p.add_argument("--artifacts", required=True, help="where the screenshots go")
    p.add_argument("--chromium", default=shutil.which("chromium"))
    a = p.parse_args()
    if not a.chromium:
        print("skipped: chromium is not installed")
        return SKIP
    os.makedirs(a.artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="qkv-web-test-")
    server = browser = None
    try:
        models = os.path.join(tmp, "models")
        run([a.make_models, models])
        image = os.path.join(tmp, "gradient.png")
        write_png(image, 16, 16)

        port = free_port()
        server_log = open(os.path.join(tmp, "server.log"), "w")
        server = start([a.qkv, "serve", "--host", "127.0.0.1", "--port", str(port)] +
                       [arg for m in ("translation", "gpt", "vit")
                        for arg in ("--model-dir", os.path.join(models, m))],
                       server_log)
        url = f"http://127.0.0.1:{port}"

        def healthy():
            if server.poll() is not None:
                raise Failure(f"qkv serve exited {server.returncode}: "
                              f"{open(server_log.name).read()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for("qkv serve's /health", healthy)

        profile = os.path.join(tmp, "chromium")
        browser = start([a.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                         "--remote-debugging-port=0", f"--user-data-dir={profile}",
                         "--window-size=900,900", "about:blank"],
                        open(os.path.join(tmp, "chromium.log"), "w"))
        active_port = os.path.join(profile, "DevToolsActivePort")
        wait_for("chromium's DevToolsActivePort", lambda: os.path.exists(active_port) and
                 len(open(active_port).read().split("\n")) >= 2)
        devtools_port = open(active_port).read().split("\n")[0]

        def page_target():
            with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list",
                                        timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        page = DevTools(wait_for("a page in chromium", page_target))
        for domain in ("Page", "Runtime", "DOM"):
            page.send(domain + ".enable")
        page.send("Page.navigate", url=url + "/")
        wait_for("the page's tabs", lambda: page.eval(
            "location.href !== 'about:blank' && document.readyState === 'complete' && "
            "['translate', 'generate', 'classify'].every((t) => "
            "document.getElementById('tab-' + t) && !document.getElementById('tab-' + t).hidden)"))

        test_translate(page, a.qkv, os.path.join(models, "translation"))
        page.screenshot(os.path.join(a.artifacts, "web_page_translate.png"))
        test_translate_error(page)
        test_generate(page, a.qkv, os.path.join(models, "gpt"))
        page.screenshot(os.path.join(a.artifacts, "web_page_generate.png"))
        test_classify(page, a.qkv, os.path.join(models, "vit"), image)
        page.screenshot(os.path.join(a.artifacts, "web_page.png"))
        print(f"screenshots in {a.artifacts}")

        errors = page.page_errors()
        if errors:
            raise Failure(f"the page logged errors: {errors}")
        return 0
    except (Failure, subprocess.TimeoutExpired, OSError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        for log in ("server.log", "chromium.log"):
            path = os.path.join(tmp, log)
            if os.path.exists(path):
                # Without a D-Bus (containers, CI) chromium logs its absence again and again.
                lines = [l for l in open(path) if "dbus" not in l]
                print(f"--- {log} (end)\n{''.join(lines[-40:])}", file=sys.stderr)
        return 1
    finally:
        stop(browser)
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
