"""The official ComfyUI frontend, served by Hearth, driven in a real headless Chromium (Playwright).

Chromium is Debian's (/usr/bin/chromium; `.ci/run` installs it); `playwright install` is never run.
Every request to a host other than the test server is blocked. Screenshots land in
test-artifacts/browser/ for a person to look at.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, Server, free_port

CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

if os.environ.get("CI") and (sync_playwright is None or not shutil.which(CHROMIUM)):
    raise RuntimeError("browser tests need playwright and Debian's chromium in CI (.ci/run installs them)")
pytestmark = pytest.mark.skipif(sync_playwright is None or not shutil.which(CHROMIUM),
                                reason="playwright or /usr/bin/chromium not installed")

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Answers the reference ComfyUI gives too: optional files the UI probes for (frontend-contract.md §2, §3).
EXPECTED_404 = ("/user.css", "/api/userdata/user.css", "/api/userdata/comfy.templates.json",
                "/api/userdata?dir=workflows", "/api/userdata?dir=subgraphs", "/api/userdata/workflows%2F.index.json",
                "/api/view?type=input&filename=undefined")
# Thrown by the frontend itself at start-up on the reference server too (frontend-contract.md §3).
KNOWN_PAGE_ERRORS = ("Cannot read properties of undefined (reading 'id')",)

MODEL_FREE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                           "color": 0xFF8800}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "frontend_check"}}}


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("fresh") / "base", port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """A server whose user has been here before (the first visit is tested on fresh_server)."""
    base = tmp_path_factory.mktemp("ui") / "base"
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(
        json.dumps({"Comfy.TutorialCompleted": True, "Comfy.InstalledVersion": "1.27.10"}))
    server = Server(base, port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Page:
    """A browser page on the test server that records responses and errors."""

    def __init__(self, browser, server: Server, name: str):
        self.server = server
        self.name = name
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.responses: list[tuple[int, str, str]] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.blocked: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("response", lambda r: self.responses.append((r.status, r.request.method, r.url)))
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def _route(self, route):
        if route.request.url.startswith(self.server.url):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def open(self, wait_nodes: bool = False):
        self.page.goto(self.server.url + "/")
        self.page.wait_for_function("window.app && window.app.graph", timeout=60000)
        if wait_nodes:
            self.page.wait_for_function("window.app.graph._nodes.length > 0", timeout=30000)
        self.page.wait_for_timeout(1500)  # let start-up requests and dialogs settle
        return self

    def close_dialogs(self):
        for _ in range(3):
            if not self.page.locator(".p-dialog-mask").count():
                return
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(300)
        self.page.locator(".p-dialog-mask").first.wait_for(state="detached", timeout=10000)

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path))
        return path

    def server_failures(self) -> list[tuple[int, str, str]]:
        bad = []
        for status, method, url in self.responses:
            path = url[len(self.server.url):]
            if status >= 500 or (status >= 400 and not path.startswith(EXPECTED_404)):
                bad.append((status, method, path))
        return bad

    def unexpected_errors(self) -> list[str]:
        errors = [e for e in self.page_errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
        # "Failed to load resource" lines are the expected 404s and the blocked outside hosts,
        # both checked above through the responses themselves.
        errors += [e for e in self.console_errors if "Failed to load resource" not in e]
        return errors

    def run_api_workflow(self, api: dict, name: str):
        self.page.evaluate("([api, name]) => window.app.loadApiJson(api, name)", [api, name])
        self.page.wait_for_timeout(300)
        with self.page.expect_response(lambda r: "/api/prompt" in r.url and r.request.method == "POST") as info:
            self.page.get_by_role("button", name="Run").first.click()
        return info.value

    def close(self):
        self.context.close()


def test_first_and_second_visit(browser, fresh_server):
    ui_server = fresh_server
    first = Page(browser, ui_server, "first-visit").open()
    try:
        # a first visit opens the template browser
        first.page.locator(".p-dialog").filter(has_text=re.compile("Template")).first.wait_for(timeout=20000)
        first.shot("templates")
        assert first.server_failures() == []
        assert first.unexpected_errors() == []
        posted = [u for s, m, u in first.responses if m == "POST" and "/api/settings/" in u]
        assert any("Comfy.TutorialCompleted" in u for u in posted), posted
    finally:
        first.close()
    # settings persisted: the second visit shows the default 7-node workflow
    second = Page(browser, ui_server, "second-visit").open(wait_nodes=True)
    try:
        types = second.page.evaluate("window.app.graph._nodes.map(n => n.type).sort()")
        assert types == sorted(["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage",
                                "KSampler", "VAEDecode", "SaveImage"])
        second.shot("default-workflow")
        assert second.server_failures() == []
        assert second.unexpected_errors() == []
        assert all(u.startswith(ui_server.url) or "127.0.0.1" not in u for u in second.blocked)
    finally:
        second.close()


def test_model_free_workflow_runs_and_its_image_appears(browser, ui_server):
    p = Page(browser, ui_server, "model-free").open(wait_nodes=True)
    try:
        p.close_dialogs()
        with p.page.expect_response(lambda r: "/api/view" in r.url and "frontend_check" in r.url,
                                    timeout=60000) as view:
            response = p.run_api_workflow(MODEL_FREE, "model_free.json")
            assert response.status == 200
        assert view.value.status == 200
        assert view.value.headers["content-type"] == "image/png"
        p.page.wait_for_timeout(500)
        p.shot("result")
        prompt_id = response.json()["prompt_id"]
        entry = ui_server.get_json(f"/history/{prompt_id}")[prompt_id]
        assert entry["status"]["status_str"] == "success"
        name = entry["outputs"]["2"]["images"][0]["filename"]
        assert (ui_server.base / "output" / name).is_file()
        # the UI stored the graph in the PNG, so the image reloads its workflow
        from PIL import Image
        assert "workflow" in Image.open(ui_server.base / "output" / name).text
        assert p.server_failures() == []
    finally:
        p.close()


def test_invalid_workflow_shows_the_error_dialog(browser, ui_server):
    p = Page(browser, ui_server, "invalid").open(wait_nodes=True)
    try:
        p.close_dialogs()
        bad = {"1": {"class_type": "LoadImage", "inputs": {"image": "no_such_image.png"}},
               "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        response = p.run_api_workflow(bad, "invalid.json")
        assert response.status == 400
        body = response.json()
        assert body["error"]["type"] == "prompt_outputs_failed_validation"
        dialog = p.page.locator(".p-dialog").filter(has_text="Invalid image file")
        dialog.first.wait_for(timeout=20000)
        p.shot("error-dialog")
    finally:
        p.close()


def _png_bytes(color=(10, 200, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_upload_from_the_ui(browser, ui_server):
    p = Page(browser, ui_server, "upload").open(wait_nodes=True)
    try:
        p.close_dialogs()
        data = _png_bytes()
        p.page.evaluate("""() => {
            const node = window.LiteGraph.createNode('LoadImage');
            node.pos = [200, 200];
            window.app.graph.add(node);
        }""")
        # Pressing the node's upload button opens a file chooser; choosing a file uploads it.
        with p.page.expect_file_chooser() as chooser:
            p.page.evaluate("""() => {
                const node = window.app.graph._nodes.find(n => n.type === 'LoadImage');
                node.widgets.find(w => w.name === 'upload').callback();
            }""")
        with p.page.expect_response(lambda r: "/api/upload/image" in r.url) as up:
            chooser.value.set_files(files=[{"name": "browser_upload.png", "mimeType": "image/png", "buffer": data}])
        assert up.value.status == 200
        assert up.value.json() == {"name": "browser_upload.png", "subfolder": "", "type": "input"}
        assert (ui_server.base / "input" / "browser_upload.png").read_bytes() == data
        p.page.wait_for_function("window.app.graph._nodes.some(n => n.type === 'LoadImage' && "
                                 "n.widgets.some(w => w.value === 'browser_upload.png'))", timeout=20000)
        p.page.wait_for_timeout(500)
        p.shot("loadimage")
        assert p.server_failures() == []
    finally:
        p.close()


def test_save_reopen_rename_delete_a_workflow(browser, ui_server):
    p = Page(browser, ui_server, "workflows").open(wait_nodes=True)
    try:
        p.close_dialogs()
        p.page.evaluate("(api) => window.app.loadApiJson(api, 'to_save.json')", MODEL_FREE)
        p.page.wait_for_timeout(300)
        # Ctrl+S asks for a name, then writes user data
        p.page.locator("#graph-canvas").focus()
        with p.page.expect_response(lambda r: "/api/userdata/workflows%2F" in r.url and r.request.method == "POST"
                                    ) as saved:
            p.page.keyboard.press("Control+s")
            box = p.page.locator(".p-dialog input").first
            box.wait_for(timeout=10000)
            box.fill("browser_flow")
            box.press("Enter")
        assert saved.value.status == 200
        path = ui_server.base / "user" / "default" / "workflows" / "browser_flow.json"
        assert json.loads(path.read_text())["nodes"]
        p.shot("saved")
        # a fresh page lists it in the workflows sidebar; clicking it reopens it
        p.close()
        p = Page(browser, ui_server, "workflows-reopen").open(wait_nodes=True)
        p.close_dialogs()
        p.page.locator("#graph-canvas").focus()
        p.page.keyboard.press("w")
        item = p.page.locator(".p-tree-node-label").filter(has_text="browser_flow.json")
        item.first.wait_for(timeout=20000)
        item.first.click()
        p.page.wait_for_function("window.app.graph._nodes.some(n => n.type === 'EmptyImage')", timeout=20000)
        p.shot("reopened")
        # rename from the item's context menu
        item.first.click(button="right")
        with p.page.expect_response(lambda r: "/move/" in r.url, timeout=20000) as moved:
            p.page.locator(".p-contextmenu").get_by_text("Rename").click()
            editor = p.page.locator(".p-tree input, .editable-text input").first
            editor.wait_for(timeout=10000)
            editor.fill("renamed_flow")
            editor.press("Enter")
        assert moved.value.status == 200
        renamed = path.with_name("renamed_flow.json")
        assert renamed.is_file() and not path.exists()
        p.shot("renamed")
        # delete from the context menu (the UI asks to confirm)
        item = p.page.locator(".p-tree-node-label").filter(has_text="renamed_flow.json")
        item.first.click(button="right")
        with p.page.expect_response(lambda r: r.request.method == "DELETE", timeout=20000) as deleted:
            p.page.locator(".p-contextmenu").get_by_text("Delete").click()
            confirm = p.page.locator(".p-dialog").get_by_role("button", name="Delete")
            try:
                confirm.wait_for(timeout=3000)
                confirm.click()
            except Exception:
                pass  # no confirmation asked
        assert deleted.value.status == 204
        assert not renamed.exists()
        p.shot("deleted")
        assert p.server_failures() == []
    finally:
        p.close()


def test_settings_survive_a_reload(browser, ui_server):
    p = Page(browser, ui_server, "settings").open(wait_nodes=True)
    try:
        with p.page.expect_response(lambda r: "/api/settings/Comfy.Sidebar.Location" in r.url) as posted:
            p.page.evaluate("window.app.extensionManager.setting.set('Comfy.Sidebar.Location', 'right')")
        assert posted.value.status == 200
        p.page.reload()
        p.page.wait_for_function("window.app && window.app.extensionManager && "
                                 "window.app.extensionManager.setting.get('Comfy.Sidebar.Location') === 'right'",
                                 timeout=30000)
        p.page.wait_for_timeout(500)
        p.shot("sidebar-right")
        stored = json.loads((ui_server.base / "user" / "default" / "comfy.settings.json").read_text())
        assert stored["Comfy.Sidebar.Location"] == "right"
    finally:
        p.close()


def test_checkpoint_txt2img_shows_progress_and_image(browser, ui_server):
    from safetensors.torch import save_file

    from tests.runtime import tiny

    save_file(tiny.sd15_checkpoint(), str(ui_server.base / "models" / "checkpoints" / "tiny_sd15.safetensors"))
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 6.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ui_txt2img"}},
    }
    p = Page(browser, ui_server, "txt2img").open(wait_nodes=True)
    try:
        p.close_dialogs()
        p.page.evaluate("""() => { window.__progress = [];
            window.comfyAPI.api.api.addEventListener('progress', e => window.__progress.push(e.detail)); }""")
        with p.page.expect_response(lambda r: "/api/view" in r.url and "ui_txt2img" in r.url,
                                    timeout=180000) as view:
            response = p.run_api_workflow(workflow, "txt2img.json")
            assert response.status == 200, response.text()
        assert view.value.status == 200
        progress = p.page.evaluate("window.__progress")
        assert [e["value"] for e in progress if e["node"] == "3"][-1] == 4
        assert all(e["max"] == 4 for e in progress if e["node"] == "3")
        p.page.wait_for_timeout(500)
        p.shot("result")
        assert p.server_failures() == []
    finally:
        p.close()


def test_execution_error_shows_a_readable_dialog(browser, ui_server):
    p = Page(browser, ui_server, "execution-error").open(wait_nodes=True)
    try:
        p.close_dialogs()
        bad = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "../escape"}}}
        response = p.run_api_workflow(bad, "exec_error.json")
        assert response.status == 200  # valid prompt; it fails while running
        dialog = p.page.locator(".p-dialog").filter(has_text="outside the output folder")
        dialog.first.wait_for(timeout=60000)
        p.shot("dialog")
        assert not list(ui_server.base.glob("escape*")) and not list(ui_server.base.parent.glob("escape*"))
    finally:
        p.close()
