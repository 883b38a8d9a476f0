"""End-to-end: the AttentionExplorer runs live in JupyterLab in a real (headless) browser.

Starts JupyterLab on 127.0.0.1 (free port, no token, a temporary root folder holding
``tests/widgets/browser/attention_explorer.ipynb`` and ``tests/widgets/browser/tiny_model.py``), opens the
notebook in Debian's chromium through Playwright, runs all cells, changes the layer dropdown and
checks that the heatmap title and image redraw. Screenshots go to ``tests/widgets/browser/*.png``
(gitignored output; look at them when the test fails).

Needs: ``apt-get install -y chromium`` (``/usr/bin/chromium``) and the ``dev``/``book`` extras
(playwright, jupyterlab). Playwright never downloads a browser here. Skips with a reason when
anything is missing. Run it alone with ``pytest -m browser tests/widgets/test_attention_explorer_browser.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

HERE = Path(__file__).resolve().parent
BROWSER_DIR = HERE / "browser"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_S = 90
TOTAL_BUDGET_S = 170


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer {url} within {timeout} s:\n"
                       f"{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started (its own process group: server + kernels), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    # kernels live in the same process group; make sure none outlives the server
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _accept_dialogs(page, wait_ms: int = 1500) -> None:
    """Accept any JupyterLab dialog (e.g. kernel selection) that would block the notebook."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(".jp-Dialog", timeout=wait_ms)
    except PlaywrightTimeout:
        return
    for _ in range(3):
        button = page.locator(".jp-Dialog .jp-mod-accept")
        if button.count() == 0:
            return
        button.first.click()
        page.wait_for_timeout(300)


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free port, rooted in a temp folder; always stopped afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found; install it with `apt-get install -y chromium` "
                    "(Debian) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (book extra)")
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(BROWSER_DIR / "attention_explorer.ipynb", root / "attention_explorer.ipynb")
    shutil.copy(BROWSER_DIR / "tiny_model.py", root / "tiny_model.py")
    jhome = tmp_path / "jupyter"
    for sub in ("config", "data", "runtime", "workspaces", "settings"):
        (jhome / sub).mkdir(parents=True)
    # user settings: start the notebook's kernel without asking, no news/update pop-ups
    settings = jhome / "settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(jhome / "config"),
        JUPYTER_RUNTIME_DIR=str(jhome / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(jhome / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(jhome / "settings"),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        PYTHONPATH=str(root) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    port = _free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.open_browser=False", "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers / CI often run as root
        cmd.append("--allow-root")
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status", proc, SERVER_START_S, log)
        yield {"url": f"http://127.0.0.1:{port}", "root": root, "log": log}
    finally:
        _stop(proc)


def test_attention_explorer_live_in_jupyterlab(jupyterlab):
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    t0 = time.monotonic()
    url = f"{jupyterlab['url']}/lab/tree/attention_explorer.ipynb?reset"
    shots = BROWSER_DIR
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            # the notebook panel and an idle kernel
            page.wait_for_selector(".jp-Notebook", state="visible")
            _accept_dialogs(page)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=90_000)
            _accept_dialogs(page)
            # Run > Run All Cells
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            title = page.locator(".ch-heatmap-title").first
            title.wait_for(state="visible", timeout=90_000)
            page.wait_for_function(
                "() => document.querySelector('.ch-heatmap-title') && "
                "document.querySelector('.ch-heatmap-title').innerText.includes('layer')")
            before_title = title.inner_text()
            img = page.locator(".ch-heatmap img").first
            img.wait_for(state="visible")
            before_src = img.get_attribute("src")
            page.locator(".ch-explorer").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "attention_explorer_before.png"), full_page=False)
            assert "layer all" in before_title, before_title

            # change the layer control: 'all' -> 1
            page.locator(".ch-layer select").first.select_option(label="1")
            page.wait_for_function(
                "() => document.querySelector('.ch-heatmap-title').innerText.includes('layer 1')",
                timeout=30_000)
            page.wait_for_function(
                "(old) => { const i = document.querySelector('.ch-heatmap img'); "
                "return i && i.getAttribute('src') !== old; }", arg=before_src, timeout=30_000)
            after_title = title.inner_text()
            assert "layer 1" in after_title and after_title != before_title
            # the kernel-side state followed the browser
            assert page.locator(".ch-message").count() >= 1
            page.locator(".ch-explorer").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "attention_explorer_after.png"), full_page=False)

            # an unknown gene in the search box shows a message, not a traceback
            search = page.locator(".ch-gene input").first
            search.fill("NOTAGENE1")
            search.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('.ch-message').innerText.includes('NOTAGENE1')",
                timeout=30_000)
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/"
                                "vnd.jupyter.stderr']").count() == 0
            page.screenshot(path=str(shots / "attention_explorer_message.png"), full_page=False)
        except Exception:
            try:  # keep what the page showed, for debugging
                page.screenshot(path=str(shots / "attention_explorer_failure.png"),
                                full_page=True)
            except Exception as err:  # noqa: BLE001 - the original failure matters more
                print(f"(no failure screenshot: {err})")
            print("JupyterLab log tail:\n" + jupyterlab["log"].read_text()[-4000:])
            raise
        finally:
            browser.close()
    assert time.monotonic() - t0 < TOTAL_BUDGET_S
