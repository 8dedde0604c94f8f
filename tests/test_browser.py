"""The page in a real browser: Debian's chromium, headless, driven by selenium through
chromium-driver, against `gplinker serve` running as its own process on 127.0.0.1."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_ner, tmp_path_factory):
    pytest.importorskip("selenium")
    pytest.importorskip("uvicorn")
    model_dir, docs = trained_ner
    out = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(out / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gplinker",
            "serve",
            "--model",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/health", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.25)
    else:
        proc.kill()
        pytest.fail("server did not start: " + (out / "server.log").read_text())
    yield url, docs
    proc.terminate()
    proc.wait(30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_highlights_the_entity_with_its_label(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, docs = server
    doc = docs[0]
    gold = {(doc.text[s.start : s.end], s.label) for s in doc.entities}
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "input.model")))
    box = browser.find_element(By.ID, "text")
    box.send_keys(doc.text)
    browser.find_element(By.ID, "go").click()
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 30).until(lambda b: status.text and status.text != "extracting...")
    assert "done in" in status.text, status.text
    WebDriverWait(browser, 5).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result .ent")))
    shown = set()
    for ent in browser.find_elements(By.CSS_SELECTOR, "#result .ent"):
        label = ent.find_element(By.CSS_SELECTOR, ":scope > .lab").text
        text = ent.text[: -len(label)].strip() if ent.text.endswith(label) else ent.text
        shown.add((text, label))
    assert gold <= shown, (gold, shown)
    assert "done in" in browser.find_element(By.ID, "status").text
    raw = browser.find_element(By.ID, "json").get_attribute("textContent")
    assert doc.text in raw  # the raw JSON is there on demand
    browser.save_screenshot(str(tmp_path / "page.png"))
