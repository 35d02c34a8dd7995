"""The page in a real browser: Debian's chromium and chromedriver through Selenium.

A tiny model is trained in a second, uvicorn serves the app on a free
127.0.0.1 port in a thread, and headless chromium draws a 7 with pointer
actions, labels drawings and fine-tunes, and runs and stops a training.
Skipped, with the reason, where the browser or its driver is missing.

Screenshots go to ``$CHAINRULE_SCREENSHOTS`` when that is set (the README's
come from there), and the stroke-to-answer latency the page measures with
``performance.now`` is printed (``-s`` shows it) and written beside them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
if missing:
    pytest.skip(f"browser tests need {' and '.join(missing)} (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

pytest.importorskip("starlette")
pytest.importorskip("PIL")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.web import create_app  # noqa: E402
from chainrule.web.app import LOOPBACK_HOSTS  # noqa: E402

WAIT = 30  # seconds any one step may take before the test fails
SHOTS = os.environ.get("CHAINRULE_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model():
    """784-32-10 trained for 3 epochs on 5,000 bundled digits (about a second): reads a clear 7."""
    (x, y), _ = cr.datasets.load_mnist()
    net = cr.Network.from_sizes([784, 32, 10], activation="relu", loss="cross_entropy",
                                optimizer=cr.Adam(lr=3e-3), seed=0)
    net.fit(x[:5000], y[:5000], epochs=3, batch_size=64, seed=0, verbose=0)
    return net


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("web")
    app = create_app({"tiny": tiny_model}, workdir=workdir, allowed_hosts=LOOPBACK_HOSTS)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


def _wait(driver, condition, what):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: condition(d))
    except Exception:
        texts = driver.execute_script(
            "return ['error', 'train-status', 'train-error'].map("
            "(id) => id + ': ' + document.getElementById(id).textContent)"
            " .concat([JSON.stringify(window.chainrule)])")
        _shot(driver, "failed.png")
        raise AssertionError(f"waited {WAIT} s for {what}; the page says {texts}") from None


def _shot(driver, name):
    """A screenshot of the whole page, through the DevTools protocol (chromium's own)."""
    if SHOTS:
        import base64

        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2000),
                "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "clip": clip})
        (Path(SHOTS) / name).write_bytes(base64.b64decode(shot["data"]))


def _stroke(driver, points):
    """One pointer stroke through ``points`` (canvas pixels, 0..280), as a mouse would draw it."""
    canvas = driver.find_element(By.ID, "canvas")
    size = canvas.size
    actions = ActionChains(driver, duration=5)

    def at(x, y):  # Selenium offsets are from the element's centre
        return x * size["width"] / 280 - size["width"] / 2, y * size["height"] / 280 - size["height"] / 2

    actions.move_to_element_with_offset(canvas, *at(*points[0])).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        for t in np.linspace(0.125, 1, 8):  # small steps, like a real pointer
            actions.move_to_element_with_offset(canvas, *at(x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    actions.release().perform()


SEVEN = [(80, 60), (200, 60), (120, 230)]
ONE = [(140, 50), (140, 230)]


def _draw(driver, points):
    before = driver.execute_script("return window.chainrule.predictions")
    _stroke(driver, points)
    _wait(driver, lambda d: d.execute_script("return window.chainrule.predictions") > before,
          "the prediction after the stroke")
    return driver.find_element(By.ID, "prediction").text


def _console_errors(driver):
    """The page's script errors since the last call (an answered 4xx is not one)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def _open(driver, url, hash_=""):
    driver.get(url + "/" + hash_)
    _wait(driver, lambda d: d.execute_script(
        "return document.getElementById('model').options.length") > 0, "the model list")


def test_draw_a_seven_and_read_the_prediction(server, browser):
    url, app = server
    _open(browser, url)
    assert _draw(browser, SEVEN) == "7"
    # The bars and the look inside are drawn from the same answer.
    bars = [browser.find_element(By.ID, f"p-{d}").text for d in range(10)]
    assert all(b.endswith("%") for b in bars)
    title = browser.find_element(By.ID, "inside-title").text
    assert "32 hidden units" in title
    # The page's 28x28 picture is what the API returns for the same drawing.
    latencies = browser.execute_script("return window.chainrule.latencies")
    _shot(browser, "draw.png")
    for points in (SEVEN, ONE, SEVEN):  # a few more strokes for the latency figure
        browser.find_element(By.ID, "clear").click()
        _draw(browser, points)
    latencies = browser.execute_script("return window.chainrule.latencies")
    assert len(latencies) == 4 and all(ms > 0 for ms in latencies)
    report = {"stroke_to_probabilities_ms": latencies, "median_ms": float(np.median(latencies))}
    print(f"\nstroke end -> probabilities on screen: {report}")
    if SHOTS:
        (Path(SHOTS) / "latency.json").write_text(json.dumps(report, indent=1))
    assert _console_errors(browser) == []


def test_label_drawings_and_fine_tune(server, browser):
    url, app = server
    service = app.state.service
    _open(browser, url)
    before = {k: v.copy() for k, v in service.model("tiny").network.parameters().items()}
    drawings = ((SEVEN, 7), (ONE, 1), ([(70, 70), (210, 70), (140, 240)], 7),
                ([(120, 40), (150, 40), (150, 240)], 1))
    for labelled, (points, digit) in enumerate(drawings, start=1):
        browser.find_element(By.ID, "clear").click()
        _draw(browser, points)
        browser.find_element(By.ID, f"label-{digit}").click()
        _wait(browser, lambda d, n=labelled: d.find_element(By.ID, "digit-count").text
              .startswith(f"{n} labelled"), "the label to be stored")
    (x_train, y_train), (x_test, y_test) = cr.datasets.load_mnist(service.digits.folder)
    assert len(y_train) + len(y_test) == 4
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == [1, 1, 7, 7]
    browser.find_element(By.ID, "finetune").click()
    name = _wait(browser, lambda d: d.find_elements(By.ID, "finetuned-name"), "fine-tuning")
    name = name[0].text
    assert name == "tiny-mine"
    assert browser.find_element(By.ID, "model").get_attribute("value") == "tiny-mine"
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#finetune-table td")]
    assert cells[0].startswith("your ") and cells[1].endswith("%") and cells[2].endswith("%")
    _shot(browser, "finetune.png")
    # The original is untouched; the new model is its own file.
    for key, value in service.model("tiny").network.parameters().items():
        np.testing.assert_array_equal(value, before[key])
    assert (service.workdir / "models" / "tiny-mine.safetensors").is_file()
    assert _console_errors(browser) == []


def test_train_one_epoch_then_start_and_stop_another(server, browser):
    url, app = server
    _open(browser, url, "#train")

    def set_field(id_, value):
        field = browser.find_element(By.ID, id_)
        field.clear()
        field.send_keys(value)

    def points(chart):
        return int(browser.find_element(By.ID, chart).get_attribute("data-points"))

    for id_, value in (("hidden", "16"), ("samples", "1500"), ("epochs", "1"), ("batch", "25")):
        set_field(id_, value)
    browser.find_element(By.ID, "start").click()
    _wait(browser, lambda d: points("acc-chart") == 1, "the epoch's validation accuracy")
    assert points("loss-chart") == 48  # 1200 training digits (300 held out) in batches of 25
    _wait(browser, lambda d: d.find_element(By.ID, "download-onnx").is_displayed(),
          "the end of training")
    status = browser.find_element(By.ID, "train-status").text
    assert "finished as trained-784-16-10" in status
    assert "MNIST test accuracy" in status
    _shot(browser, "train.png")

    # A long run, stopped after a few steps: the model trained so far is kept.
    set_field("hidden", "256,128")
    set_field("samples", "10000")
    set_field("epochs", "50")
    set_field("batch", "32")
    first_job = browser.execute_script("return window.chainrule.job")
    browser.find_element(By.ID, "start").click()
    _wait(browser, lambda d: d.execute_script("return window.chainrule.job") != first_job
          and points("loss-chart") >= 5, "the second run's first steps")
    # A second start while it runs gets a clear message.
    def second_start(d):
        d.execute_script("document.getElementById('start').disabled = false")
        d.find_element(By.ID, "start").click()
        time.sleep(0.2)
        return "already running" in d.find_element(By.ID, "train-error").text

    _wait(browser, second_start, "the one-training-at-a-time message")
    _shot(browser, "train-running.png")
    browser.find_element(By.ID, "stop").click()
    _wait(browser, lambda d: "stopped" in d.find_element(By.ID, "train-status").text,
          "the stop")
    service = app.state.service
    assert service.trainer.job.state == "stopped"
    assert service.trainer.job.model == "trained-784-256-128-10"
    # Send it to the Draw page and read a digit with it.
    browser.find_element(By.ID, "send-to-draw").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-draw").is_displayed(), "the Draw page")
    assert browser.find_element(By.ID, "model").get_attribute("value") == "trained-784-256-128-10"
    assert _draw(browser, ONE) in "0123456789"
    assert _console_errors(browser) == []
