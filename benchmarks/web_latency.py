"""Stroke end -> probabilities on screen, in headless chromium, for the default architectures.

Serves the default MLP recipe (784-512-256-10) and the default CNN recipe
(conv 32 5x5, conv 64 5x5, dense 128) with ``chainrule.web.create_app``,
draws digits on the page's canvas with Selenium pointer actions, and reads
the latencies the page itself measures with ``performance.now()`` (from the
``pointerup`` to the frame after the bars are filled). The weights are the
untrained initial ones: a prediction costs the same whatever their values.

    python benchmarks/web_latency.py [--strokes 20]

Needs the web and test extras and Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time

import numpy as np
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from chainrule.recipes import DigitRecipe, build_network
from chainrule.recipes_cnn import CNNRecipe, build_cnn
from chainrule.web import create_app

STROKES = [[(80, 60), (200, 60), (120, 230)], [(140, 50), (140, 230)],
           [(90, 40), (70, 160), (200, 160)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20, help="strokes per model (default 20)")
    args = parser.parse_args()
    models = {"mlp-default": build_network(DigitRecipe()), "cnn-default": build_cnn(CNNRecipe())}
    app = create_app(models, workdir=tempfile.mkdtemp())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path="/usr/bin/chromedriver"),
                              options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.getElementById('model').options.length") == 2)
        canvas = driver.find_element(By.ID, "canvas")
        half = canvas.size["width"] / 2
        print(f"cpu cores: {os.cpu_count()}; {args.strokes} strokes per model")
        for name in models:
            Select(driver.find_element(By.ID, "model")).select_by_value(name)
            latencies = []
            for i in range(args.strokes + 1):  # the first stroke warms up, not counted
                driver.find_element(By.ID, "clear").click()
                done = driver.execute_script("return window.chainrule.predictions")
                points = STROKES[i % len(STROKES)]
                actions = ActionChains(driver, duration=5)
                actions.move_to_element_with_offset(canvas, points[0][0] - half,
                                                    points[0][1] - half).click_and_hold()
                for x, y in points[1:]:
                    actions.move_to_element_with_offset(canvas, x - half, y - half)
                actions.release().perform()
                WebDriverWait(driver, 30, poll_frequency=0.01).until(
                    lambda d, seen=done: d.execute_script(
                        "return window.chainrule.predictions") > seen)
                if i:
                    latencies.append(driver.execute_script(
                        "return window.chainrule.latencies.at(-1)"))
            print(f"{name}: median {np.median(latencies):.1f} ms, 90th percentile "
                  f"{np.percentile(latencies, 90):.1f} ms, max {max(latencies):.1f} ms")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
