"""The web app's JSON API through Starlette's test client, and the `chainrule serve` command.

Every answer is checked against the library calls the app is a front end
for: ``images.to_mnist``, ``Network.predict``, ``load_mnist``, ``io.load``.
"""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.images import to_mnist  # noqa: E402
from chainrule.web import MAX_BODY_BYTES, create_app  # noqa: E402
from chainrule.web.models import probabilities  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    (x, y), (x_test, y_test) = cr.datasets.load_mnist(flatten=False, normalize=False, channels=False)
    return x_test[:40], y_test[:40]


@pytest.fixture(scope="module")
def tiny():
    """784-16-10, one quick epoch on 2,000 bundled digits: enough to beat chance clearly."""
    (x, y), _ = cr.datasets.load_mnist()
    net = cr.Network.from_sizes([784, 16, 10], activation="relu", loss="cross_entropy",
                                optimizer=cr.Adam(lr=3e-3), seed=0)
    net.fit(x[:2000], y[:2000], epochs=1, batch_size=64, seed=0, verbose=0)
    return net


@pytest.fixture
def client(tiny, tmp_path):
    app = create_app({"tiny": tiny}, workdir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.service = app.state.service
        yield c


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _wait_for_training(client, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get("/api/train").json()
        if job["training"]["state"] in ("done", "stopped", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError("training did not end in time")


def test_models_are_listed_by_name(client):
    data = client.get("/api/models").json()
    assert data["default"] == "tiny"
    assert data["models"] == [{"name": "tiny", "description": "Dense(784->16) ReLU Dense(16->10)",
                               "kind": "mlp", "parameters": 784 * 16 + 16 + 16 * 10 + 10}]


def test_predict_is_the_library_prediction(client, tiny, digits):
    images, labels = digits
    for image in images[:5]:
        result = client.post("/api/predict", json={"pixels": image.tolist()}).json()
        expected_input = to_mnist(image)
        np.testing.assert_allclose(np.reshape(result["input"]["values"], (28, 28)),
                                   expected_input, atol=5e-4)
        x = expected_input.reshape(1, 784)
        proba = probabilities(tiny, x)[0]
        np.testing.assert_allclose(result["probabilities"], proba, atol=1e-6)
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert result["prediction"] == int(np.argmax(proba))
        # The look inside: the first hidden layer, relu(x @ W.T + b), by hand.
        weight, bias = tiny.layers[0].params["weight"], tiny.layers[0].params["bias"]
        hidden = np.maximum(x @ weight.T + bias, 0)[0]
        assert result["inside"]["kind"] == "units" and result["inside"]["shape"] == [16]
        assert result["inside"]["layer"] == 1 and result["inside"]["name"] == "ReLU()"
        np.testing.assert_allclose(result["inside"]["values"], hidden, atol=1e-4)


def test_the_model_reads_test_digits(client, digits):
    images, labels = digits
    predicted = [client.post("/api/predict", json={"pixels": image.tolist()}).json()["prediction"]
                 for image in images]
    assert np.mean(np.array(predicted) == labels) >= 0.7  # chance is 0.1


def test_png_and_pixels_give_the_same_answer(client, digits):
    image = 255 - digits[0][3]  # dark ink on white paper, as the canvas sends it
    from_png = client.post("/api/predict", json={"image": _png(image)}).json()
    from_pixels = client.post("/api/predict", json={"pixels": image.tolist()}).json()
    from_base64 = client.post("/api/predict",
                              json={"image": _png(image).split(",", 1)[1]}).json()
    for key in ("prediction", "probabilities", "input", "inside"):
        assert from_png[key] == from_pixels[key] == from_base64[key]


def test_concurrent_predictions_equal_single_ones(client, digits):
    images = [np.asarray(image) for image in digits[0][:16]]
    single = [client.service.predict(None, image) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            together = list(pool.map(lambda im: client.service.predict(None, im), images))
            for a, b in zip(single, together):
                assert a["probabilities"] == b["probabilities"]
                assert a["inside"] == b["inside"] and a["input"] == b["input"]
    # and through HTTP from several threads at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(
            lambda im: client.post("/api/predict", json={"pixels": im.tolist()}).json(), images))
    assert [a["probabilities"] for a in answers] == [s["probabilities"] for s in single]


def _big_png():
    buffer = io.BytesIO()
    Image.new("L", (2000, 8), 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


SEVEN = [[0] * 28 for _ in range(28)]
for _c in range(6, 22):
    SEVEN[6][_c] = 255
for _r in range(6, 24):
    SEVEN[_r][21 - (_r - 6) * 10 // 18] = 255

MALFORMED = [
    # (method, path, body or raw bytes, headers, expected status)
    ("POST", "/api/predict", b"{", None, 400),
    ("POST", "/api/predict", b"[1, 2]", None, 400),
    ("POST", "/api/predict", b'{"pixels": NaN}', None, 400),
    ("POST", "/api/predict", b"\xff\xfe", None, 400),
    ("POST", "/api/predict", b'{"pixels": [[0]]}', {"content-type": "text/plain"}, 415),
    ("POST", "/api/predict", {}, None, 400),
    ("POST", "/api/predict", {"image": "x", "pixels": [[0]]}, None, 400),
    ("POST", "/api/predict", {"image": 5}, None, 400),
    ("POST", "/api/predict", {"image": "data:image/png,abc"}, None, 400),
    ("POST", "/api/predict", {"image": "not base64!"}, None, 400),
    ("POST", "/api/predict", {"image": base64.b64encode(b"GIF89a garbage").decode()}, None, 400),
    ("POST", "/api/predict", {"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()}, None, 400),
    ("POST", "/api/predict", {"image": "BIG"}, None, 413),
    ("POST", "/api/predict", {"pixels": "abc"}, None, 400),
    ("POST", "/api/predict", {"pixels": []}, None, 400),
    ("POST", "/api/predict", {"pixels": [[]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, 1], [0]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, "a"]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, True]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, 256]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, -1]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0, 1e309]]}, None, 400),
    ("POST", "/api/predict", {"pixels": [[0] * 1025]}, None, 413),
    ("POST", "/api/predict", {"pixels": [[0] * 28] * 28}, None, 422),  # blank: no digit
    ("POST", "/api/predict", {"pixels": SEVEN, "model": "nope"}, None, 404),
    ("POST", "/api/predict", {"pixels": SEVEN, "model": "../../etc/passwd"}, None, 404),
    ("POST", "/api/predict", {"pixels": SEVEN, "model": ["tiny"]}, None, 400),
    ("POST", "/api/predict", {"pixels": SEVEN, "path": "/etc/passwd"}, None, 400),
    ("POST", "/api/predict", b"[" * 100000 + b"]" * 100000, None, 400),
    ("POST", "/api/predict", b" " * (MAX_BODY_BYTES + 1), None, 413),
    ("POST", "/api/predict", b"{}", {"content-length": "abc"}, 400),
    ("GET", "/api/predict", None, None, 405),
    ("POST", "/api/digits", {"pixels": SEVEN}, None, 400),
    ("POST", "/api/digits", {"pixels": SEVEN, "label": 10}, None, 400),
    ("POST", "/api/digits", {"pixels": SEVEN, "label": "7"}, None, 400),
    ("POST", "/api/digits", {"pixels": SEVEN, "label": True}, None, 400),
    ("POST", "/api/digits", {"pixels": [[0] * 28] * 28, "label": 3}, None, 422),
    ("POST", "/api/finetune", {"model": "tiny"}, None, 409),  # no drawings labelled yet
    ("POST", "/api/finetune", {"model": "tiny", "epochs": 0}, None, 400),
    ("POST", "/api/finetune", {"model": "tiny", "epochs": 1.5}, None, 400),
    ("POST", "/api/train", {"lr": "fast"}, None, 400),
    ("POST", "/api/train", {"lr": 0}, None, 400),
    ("POST", "/api/train", {"hidden": [8, 8, 8, 8, 8]}, None, 400),
    ("POST", "/api/train", {"hidden": [0]}, None, 400),
    ("POST", "/api/train", {"hidden": "128"}, None, 400),
    ("POST", "/api/train", {"batch_size": 0}, None, 400),
    ("POST", "/api/train", {"epochs": 1000}, None, 400),
    ("POST", "/api/train", {"samples": 10**9}, None, 400),
    ("POST", "/api/train", {"activation": "softmax"}, None, 400),
    ("POST", "/api/train", {"optimizer": "lbfgs"}, None, 400),
    ("POST", "/api/train", {"data": "/etc"}, None, 400),
    ("POST", "/api/train/stop", {}, None, 409),  # nothing running
    ("GET", "/api/train/events?since=abc", None, None, 400),
    ("GET", "/api/models/tiny/download?format=pickle", None, None, 400),
    ("GET", "/api/models/..%2F..%2Fetc%2Fpasswd/download", None, None, 404),
    ("GET", "/api/models/nope/download", None, None, 404),
    ("GET", "/static/../service.py", None, None, 404),
    ("GET", "/no/such/page", None, None, 404),
]


@pytest.mark.parametrize("method, path, body, headers, status", MALFORMED,
                         ids=[f"{i}-{m[1]}" for i, m in enumerate(MALFORMED)])
def test_malformed_and_oversized_requests_get_a_json_4xx(client, method, path, body, headers,
                                                         status):
    kwargs = {}
    if isinstance(body, dict) and body.get("image") == "BIG":
        body = {"image": _big_png()}
    if isinstance(body, (bytes, bytearray)):
        kwargs["content"] = bytes(body)
        kwargs["headers"] = {"content-type": "application/json", **(headers or {})}
    elif body is not None:
        kwargs["content"] = json.dumps(body)
        kwargs["headers"] = {"content-type": "application/json", **(headers or {})}
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_only_loopback_host_names_are_answered_when_asked(tiny, tmp_path):
    """A DNS-rebinding page arrives with its own name in Host: refused, in JSON."""
    from chainrule.web.app import LOOPBACK_HOSTS

    app = create_app({"tiny": tiny}, workdir=tmp_path, allowed_hosts=LOOPBACK_HOSTS)
    for base, status in (("http://127.0.0.1:8000", 200), ("http://localhost:8000", 200),
                         ("http://[::1]:8000", 200), ("http://evil.example:8000", 400),
                         ("http://127.0.0.1.evil.example", 400), ("http://testserver", 400)):
        with TestClient(app, base_url=base) as client:
            response = client.get("/api/models")
            assert response.status_code == status, base
            if status == 400:
                assert response.json() == {"error": "unexpected Host header; open the page "
                                                    "as http://127.0.0.1:PORT/"}


def test_labelled_drawings_are_an_idx_dataset(client, digits):
    images, labels = digits
    for image, label in zip(images[:12], labels[:12]):
        summary = client.post("/api/digits", json={"pixels": image.tolist(),
                                                   "label": int(label)}).json()
    assert summary["count"] == 12 and summary["train"] + summary["test"] == 12
    assert summary["per_label"] == np.bincount(labels[:12], minlength=10).tolist()
    assert client.get("/api/digits").json() == summary
    # load_mnist (and so `chainrule train --data`) reads the folder.
    (x_train, y_train), (x_test, y_test) = cr.datasets.load_mnist(
        client.service.digits.folder, flatten=False, normalize=False, channels=False)
    assert len(y_train) == summary["train"] and len(y_test) == summary["test"]
    expected = {(np.round(to_mnist(im) * 255).astype(np.uint8).tobytes(), int(lb))
                for im, lb in zip(images[:12], labels[:12])}
    stored = {(im.tobytes(), int(lb)) for im, lb in zip(np.concatenate([x_train, x_test]),
                                                        np.concatenate([y_train, y_test]))}
    assert stored == expected
    # A restarted server finds them again.
    again = create_app({"x": client.service.model("tiny").network},
                       workdir=client.service.workdir).state.service
    assert again.digits.summary() == summary


def test_fine_tune_saves_a_new_model_and_reports_before_and_after(client, tiny, digits):
    images, labels = digits
    for image, label in zip(images[:15], labels[:15]):
        client.post("/api/digits", json={"pixels": image.tolist(), "label": int(label)})
    original = {k: v.copy() for k, v in tiny.parameters().items()}
    result = client.post("/api/finetune", json={"model": "tiny", "epochs": 1})
    assert result.status_code == 200, result.text
    result = result.json()
    assert result["model"] == "tiny-mine" and result["from"] == "tiny"
    (mine_x, mine_y), (held_x, held_y) = client.service.digits.splits()
    assert result["digits"]["mine"] == len(mine_y) and result["digits"]["mine_held_out"] == len(held_y)
    _, (x_test, y_test) = cr.datasets.load_mnist()

    def accuracy(net, x, y):
        return float(np.mean(np.argmax(net.predict(x), axis=1) == y))

    new = client.service.model("tiny-mine").network
    assert result["before"]["mine"] == pytest.approx(accuracy(tiny, mine_x, mine_y))
    assert result["after"]["mine"] == pytest.approx(accuracy(new, mine_x, mine_y))
    assert result["after"]["mnist_test"] == pytest.approx(accuracy(new, x_test, y_test))
    assert result["before"]["mnist_test"] == pytest.approx(accuracy(tiny, x_test, y_test))
    for key, value in tiny.parameters().items():  # the original is untouched
        np.testing.assert_array_equal(value, original[key])
    saved = cr.load(client.service.workdir / "models" / "tiny-mine.safetensors")
    for key, value in new.parameters().items():
        np.testing.assert_array_equal(saved.parameters()[key], value)
    # Again: a new name, never over the first.
    assert client.post("/api/finetune", json={"model": "tiny", "epochs": 1}).json()["model"] \
        == "tiny-mine-2"


def test_training_streams_steps_epochs_and_health_and_keeps_the_model(client):
    settings = {"hidden": [16], "samples": 300, "epochs": 2, "batch_size": 50, "lr": 0.003}
    started = client.post("/api/train", json=settings)
    assert started.status_code == 202
    second = client.post("/api/train", json=settings)
    assert second.status_code == 409 and "already running" in second.json()["error"]
    job = _wait_for_training(client)
    assert job["training"]["state"] == "done"
    events = job["events"]
    kinds = [e["type"] for e in events]
    # 300 digits: 60 held out for validation, 240 in batches of 50 -> 5 steps an epoch
    assert kinds == ["begin"] + ["step"] * 5 + ["epoch"] + ["step"] * 5 + ["epoch", "test", "end"]
    assert [e["n"] for e in events] == list(range(len(events)))
    epochs = [e for e in events if e["type"] == "epoch"]
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 11))
    # fit's epoch loss is the mean of its steps' losses weighted by batch size (4 x 50, then 40)
    assert epochs[0]["loss"] == pytest.approx(
        np.average([e["loss"] for e in steps[:5]], weights=[50, 50, 50, 50, 40]))
    name = events[-1]["model"]
    assert name == "trained-784-16-10"
    network = client.service.model(name).network
    weights = epochs[-1]["weights"]
    assert (weights["count"], weights["height"], weights["width"]) == (16, 28, 28)
    w = network.layers[0].params["weight"].reshape(16, 28, 28).astype(np.float64)
    expected = np.round(128 + 127 * w / np.abs(w).reshape(16, -1).max(1)[:, None, None])
    np.testing.assert_array_equal(
        np.frombuffer(bytes.fromhex(weights["hex"]), np.uint8).reshape(16, 28, 28), expected)
    assert [g["layer"] for g in epochs[-1]["gradient_norms"]] == [0, 2]
    assert all(g["norm"] > 0 for g in epochs[-1]["gradient_norms"])
    (relu,) = epochs[-1]["activations"]
    assert relu["kind"] == "relu" and 0 <= relu["dead"] <= 1
    assert 0 <= epochs[-1]["val_accuracy"] <= 1
    # The same events as a Server-Sent Events stream.
    stream = client.get("/api/train/events?follow=0").text
    sent = [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:")]
    assert sent == events
    # Downloads: the library's own formats, loadable again.
    body = client.get(f"/api/models/{name}/download?format=safetensors")
    path = client.service.workdir / "download.safetensors"
    path.write_bytes(body.content)
    for key, value in cr.load(path).parameters().items():
        np.testing.assert_array_equal(value, network.parameters()[key])
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(client.get(f"/api/models/{name}/download?format=onnx").content)
    onnx.checker.check_model(model)


def test_stop_keeps_the_model_trained_so_far(client, digits):
    image = digits[0][7].tolist()
    alone = client.post("/api/predict", json={"pixels": image}).json()
    started = client.post("/api/train", json={"hidden": [8], "samples": 10000, "epochs": 50,
                                              "batch_size": 10})
    assert started.status_code == 202
    deadline = time.monotonic() + 30
    while not any(e["type"] == "step" for e in client.get("/api/train").json()["events"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Drawing goes on while it trains, with the same answers.
    during = client.post("/api/predict", json={"pixels": image}).json()
    assert client.get("/api/train").json()["training"]["state"] == "running"
    assert during["probabilities"] == alone["probabilities"]
    assert client.post("/api/train/stop", json={}).json()["stopping"] is True
    job = _wait_for_training(client)
    assert job["training"]["state"] == "stopped"
    steps = [e for e in job["events"] if e["type"] == "step"]
    assert 1 <= len(steps) < 800  # far fewer than one epoch (8,000 digits / 10)
    assert job["events"][-1] == {**job["events"][-1], "type": "end", "state": "stopped"}
    assert client.service.model(job["training"]["model"]) is not None


def test_a_model_that_is_not_a_digit_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outputs"):
        create_app({"xor": cr.Network.from_sizes([784, 4, 2])}, workdir=tmp_path)
    with pytest.raises(ValueError, match="784"):
        create_app({"small": cr.Network.from_sizes([64, 4, 10])}, workdir=tmp_path)
    # squared error on plain outputs is a regression: no probabilities to show
    with pytest.raises(ValueError, match="not probabilities"):
        create_app({"regression": cr.Network.from_sizes([784, 4, 10])}, workdir=tmp_path)


# -- the command ----------------------------------------------------------------------------


def test_serve_command_loads_models_and_warns_off_loopback(tmp_path, tiny, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    from chainrule.cli import main

    path = tmp_path / "tiny.safetensors"
    tiny.save(path)
    calls = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: calls.append(self.config))
    assert main(["serve", str(path), "--workdir", str(tmp_path / "w")]) == 0
    config = calls[-1]
    assert config.host == "127.0.0.1" and config.port == 8000
    assert list(config.app.state.service.models) == ["tiny"]
    with TestClient(config.app, base_url="http://attacker.example") as c:  # DNS rebinding
        assert c.get("/api/models").status_code == 400
    assert "warning" not in capsys.readouterr().err
    assert main(["serve", str(path), "--host", "0.0.0.0", "--port", "8123",
                 "--workdir", str(tmp_path / "w")]) == 0
    assert calls[-1].host == "0.0.0.0" and calls[-1].port == 8123
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.safetensors")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err


def test_serve_without_a_model_uses_or_trains_the_default(tmp_path, tiny, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    from chainrule.cli import main
    from chainrule.web.service import Service

    monkeypatch.chdir(tmp_path)
    calls, trainings = [], []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: calls.append(self.config.app))
    # No model here: the default is trained in the background (not in this test).
    monkeypatch.setattr(Service, "train_default",
                        lambda self, path, recipe=None, callbacks=(): trainings.append(path))
    assert main(["serve"]) == 0
    assert trainings == ["mnist-mlp.safetensors"]
    assert "training the default digit model" in capsys.readouterr().out
    # With one in the current directory, it is used.
    tiny.save(tmp_path / "mnist-mlp.safetensors")
    assert main(["serve"]) == 0
    assert trainings == ["mnist-mlp.safetensors"] and list(calls[-1].state.service.models) == ["mnist-mlp"]


def test_default_model_training_on_first_use(tmp_path):
    """The first-use path end to end, with a tiny recipe in place of the default one."""
    from chainrule.recipes import DigitRecipe
    from chainrule.web.service import Service

    service = Service({}, workdir=tmp_path)
    recipe = DigitRecipe().replace(layers=(784, 8, 10), epochs=1, validation=100)
    with pytest.raises(ValueError, match="no model loaded"):
        service.model(None)
    service.train_default(tmp_path / "mnist-mlp.safetensors", recipe=recipe)
    service.trainer.thread.join(60)
    job = service.trainer.job
    assert job.state == "done" and job.kind == "default" and job.model == "mnist-mlp"
    assert service.default == "mnist-mlp"
    assert (tmp_path / "mnist-mlp.safetensors").is_file()
    assert any(e["type"] == "epoch" for e in job.events)


# -- a convolutional model --------------------------------------------------------------------


def test_cnn_look_inside_is_the_first_convolutions_feature_maps(tmp_path, digits):
    from chainrule import recipes_cnn

    net = recipes_cnn.build_cnn(recipes_cnn.CNNRecipe(channels=(3,), kernel_size=5, hidden=0,
                                                      dropout=0.0))
    app = create_app({"cnn": net}, workdir=tmp_path)
    with TestClient(app) as client:
        assert client.get("/api/models").json()["models"][0]["kind"] == "cnn"
        image = digits[0][0]
        result = client.post("/api/predict", json={"pixels": image.tolist()}).json()
        # Fine-tuning a CNN feeds it images, and keeps it a CNN.
        for im, label in zip(digits[0][:6], digits[1][:6]):
            client.post("/api/digits", json={"pixels": im.tolist(), "label": int(label)})
        tuned = app.state.service.fine_tune("cnn", epochs=1, mnist_test=500)  # a quick look
        assert tuned["model"] == "cnn-mine" and app.state.service.model("cnn-mine").is_cnn
        assert tuned["digits"]["mnist_test"] == 500
    x = to_mnist(image).astype(np.float64)
    np.testing.assert_allclose(result["probabilities"],
                               probabilities(net, x.reshape(1, 1, 28, 28))[0], atol=1e-6)
    # conv(1 -> 3, 5x5, padding 2) then relu, by hand: a cross-correlation, as PyTorch's.
    weight = net.layers[0].params["weight"].astype(np.float64)
    bias = net.layers[0].params["bias"].astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, 2), (5, 5))  # (28, 28, 5, 5)
    maps = np.maximum(np.einsum("ijpq,opq->oij", windows, weight[:, 0]) + bias[:, None, None], 0)
    inside = result["inside"]
    assert inside["kind"] == "maps" and inside["shape"] == [3, 28, 28] and inside["layer"] == 1
    np.testing.assert_allclose(np.reshape(inside["values"], (3, 28, 28)), maps, atol=2e-4)


def test_the_look_inside_passes_batch_norm_and_activation():
    from chainrule import recipes_cnn
    from chainrule.layers import BatchNorm1d, Dense
    from chainrule.web.models import inside_layer

    bn_cnn = recipes_cnn.build_cnn(recipes_cnn.CNNRecipe(channels=(2,), batch_norm=True))
    assert [type(layer).__name__ for layer in bn_cnn.layers[:3]] == ["Conv2D", "BatchNorm2d", "ReLU"]
    assert inside_layer(bn_cnn) == 2
    mlp = cr.Network([Dense(784, 8), BatchNorm1d(8), cr.Tanh(), Dense(8, 10)], loss="cross_entropy")
    assert inside_layer(mlp) == 2
    assert inside_layer(cr.Network([Dense(784, 10)], loss="cross_entropy")) is None


def test_cnn_training_from_the_page(client):
    started = client.post("/api/train", json={"architecture": "cnn", "channels": [2],
                                              "hidden": [], "samples": 200, "epochs": 1,
                                              "batch_size": 40})
    assert started.status_code == 202, started.text
    job = _wait_for_training(client)
    assert job["training"]["state"] == "done", job["events"][-1]
    (epoch,) = [e for e in job["events"] if e["type"] == "epoch"]
    weights = epoch["weights"]
    assert (weights["count"], weights["height"], weights["width"]) == (2, 5, 5)
    name = job["training"]["model"]
    assert name == "trained-cnn-2" and client.service.model(name).is_cnn


def test_health_warnings_reach_the_page(client):
    """Adam at lr 1.0 kills most relus in one epoch; HealthCheck's words are in the epoch event."""
    started = client.post("/api/train", json={"hidden": [32], "samples": 500, "epochs": 1,
                                              "batch_size": 50, "lr": 1.0})
    assert started.status_code == 202
    job = _wait_for_training(client)
    (epoch,) = [e for e in job["events"] if e["type"] == "epoch"]
    (relu,) = epoch["activations"]
    assert relu["dead"] > 0.5
    assert len(epoch["warnings"]) == 1 and "relus are dead" in epoch["warnings"][0]
