"""The HTTP side of ``chainrule serve``: a Starlette app of a few routes and a static page.

Routes (the JSON API is described in the README):

- ``GET /``: the page (``static/index.html``), ``/static/...`` its script and style
- ``GET /api/models``: the models the page may use, by name
- ``POST /api/predict``: a drawing in, the prepared 28x28 picture, the ten
  probabilities and the look inside out
- ``GET|POST /api/digits``: the labelled drawings kept as an IDX folder
- ``POST /api/finetune``: fine-tune a copy of a model on them
- ``POST /api/train``, ``POST /api/train/stop``, ``GET /api/train``,
  ``GET /api/train/events`` (Server-Sent Events): one training at a time
- ``GET /api/models/{name}/download?format=safetensors|onnx``

Safe by default: bodies are size-limited and validated, a model is named,
never a path, and every error is a JSON ``{"error": "..."}`` with a 4xx
status (a 500 says only "internal error"; the traceback goes to the log).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..network import Network
from .errors import ServiceError
from .jobs import TrainSettings
from .service import Service

__all__ = ["create_app", "HostCheck", "LOOPBACK_HOSTS", "MAX_BODY_BYTES", "MAX_IMAGE_SIDE"]

logger = logging.getLogger("chainrule.web")

STATIC = Path(__file__).resolve().parent / "static"
#: Largest request body accepted (a 280x280 canvas as PNG is about 10 kB).
MAX_BODY_BYTES = 2 * 2**20
#: Largest drawing side accepted, in pixels, for a PNG or a pixel list.
MAX_IMAGE_SIDE = 1024
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_SECONDS = 15.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# -- reading requests -------------------------------------------------------------------------


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, refusing bodies over ``MAX_BODY_BYTES`` before reading them all."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def drawing(data: Mapping[str, Any]) -> Any:
    """The drawing of a request: ``"image"`` (a PNG or JPEG, base64 or a data URL) or ``"pixels"``.

    Returns a Pillow image or a 2-D float array, for ``images.to_mnist``.
    """
    if ("image" in data) == ("pixels" in data):
        raise ApiError(400, 'send the drawing as "image" (a PNG data URL) or "pixels" '
                       "(rows of grey levels), exactly one of them")
    if "image" in data:
        return _decode_image(data["image"])
    return _pixels(data["pixels"])


def _decode_image(text: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(text, str):
        raise ApiError(400, '"image" must be a string: a data URL or base64 PNG')
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise ApiError(400, '"image" data URL must be base64-encoded')
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, '"image" is not valid base64') from None
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG", "JPEG"])
        # The header gives the size before any pixel is decoded.
        if max(image.size) > MAX_IMAGE_SIDE or min(image.size) < 1:
            raise ApiError(413, f"the image is {image.size[0]}x{image.size[1]} pixels; "
                           f"at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} accepted")
        image.load()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ApiError(400, '"image" is not a readable PNG or JPEG') from None
    return image


def _pixels(rows: Any) -> Any:
    import numpy as np

    if (not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows)):
        raise ApiError(400, '"pixels" must be a list of rows of numbers')
    height, width = len(rows), len(rows[0])
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise ApiError(413, f"at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels accepted")
    if width == 0 or any(len(r) != width for r in rows):
        raise ApiError(400, '"pixels" rows must all have the same, non-zero length')
    for row in rows:
        for v in row:
            if (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                    or not 0 <= v <= 255):
                raise ApiError(400, '"pixels" must hold numbers from 0 to 255 (or 0 to 1)')
    array = np.asarray(rows, dtype=np.float32)
    return array / 255.0 if array.max() > 1.0 else array


def _label(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
        raise ApiError(400, '"label" must be a whole number from 0 to 9')
    return value


def _model_name(data: Mapping[str, Any]) -> Any:
    name = data.get("model")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, '"model" must be a model name from GET /api/models')
    return name


def _only(data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r:.40}; expected {', '.join(sorted(allowed))}")


# -- the app ------------------------------------------------------------------------------------


#: Host names a server bound to a loopback address answers to (``chainrule serve`` passes them).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class HostCheck:
    """Answer 400 unless the request's ``Host`` is one of ``hosts`` (port aside).

    A page on another site that points its own domain name at 127.0.0.1 (DNS
    rebinding) reaches a local server with its own name in ``Host``; this
    refuses it, so only pages opened as ``http://127.0.0.1:PORT/`` or
    ``http://localhost:PORT/`` can use the API.
    """

    def __init__(self, app: Any, hosts: Sequence[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in self.hosts:
                response = JSONResponse({"error": "unexpected Host header; open the page as "
                                         "http://127.0.0.1:PORT/"}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(models: Sequence[str | os.PathLike] | Mapping[str, Network] = (), *,
               workdir: str | os.PathLike = "chainrule-web",
               service: Service | None = None,
               allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The web app for ``models`` (paths of saved models, or a mapping name -> Network).

    ``workdir`` receives the labelled drawings (``my-digits/``, an IDX
    folder) and the models trained or fine-tuned on the page (``models/``).
    ``allowed_hosts``: when given, requests whose ``Host`` header names
    another host are refused (see :class:`HostCheck`). The
    :class:`~chainrule.web.service.Service` is ``app.state.service``.
    """
    service = service if service is not None else Service(models, workdir=workdir)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def list_models(request: Request) -> Response:
        job = service.trainer.job
        return JSONResponse({
            "models": [entry.info() for entry in list(service.models.values())],
            "default": service.default,
            "training": job.snapshot() if job is not None else None,
        })

    async def predict(request: Request) -> Response:
        data = await read_json(request)
        _only(data, {"model", "image", "pixels"})
        name, picture = _model_name(data), drawing(data)
        return JSONResponse(await run_in_threadpool(service.predict, name, picture))

    async def digits(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(service.digits.summary())
        data = await read_json(request)
        _only(data, {"image", "pixels", "label"})
        if "label" not in data:
            raise ApiError(400, 'say which digit it was: "label": 0..9')
        label, picture = _label(data["label"]), drawing(data)
        return JSONResponse(await run_in_threadpool(service.label, picture, label))

    async def finetune(request: Request) -> Response:
        data = await read_json(request)
        _only(data, {"model", "epochs"})
        epochs = data.get("epochs", 2)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 10:
            raise ApiError(400, '"epochs" must be a whole number from 1 to 10')
        return JSONResponse(await run_in_threadpool(service.fine_tune, _model_name(data), epochs))

    async def train(request: Request) -> Response:
        if request.method == "GET":
            job = service.trainer.job
            return JSONResponse({"training": job.snapshot() if job else None,
                                 "events": list(job.events) if job else []})
        data = await read_json(request)
        settings = TrainSettings.from_request(data)
        job = service.start_training(settings)
        return JSONResponse(job.snapshot(), status_code=202)

    async def stop(request: Request) -> Response:
        job = service.trainer.stop()
        return JSONResponse({"stopping": True, "job": job.id})

    async def events(request: Request) -> Response:
        since = request.query_params.get("since", "0")
        follow = request.query_params.get("follow", "1") != "0"
        if not since.isdigit() or len(since) > 9:
            raise ApiError(400, "since must be a whole number")
        return StreamingResponse(_event_stream(request, service, int(since), follow,
                                               request.app.state.stopping),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def download(request: Request) -> Response:
        fmt = request.query_params.get("format", "safetensors")
        body, filename = await run_in_threadpool(service.download,
                                                 request.path_params["name"], fmt)
        kind = "application/octet-stream"
        return Response(body, media_type=kind,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return JSONResponse({"error": error.message}, status_code=error.status)

    async def service_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ServiceError)
        return JSONResponse({"error": str(error)}, status_code=error.status)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return JSONResponse({"error": error.detail}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    async def internal_error(request: Request, error: Exception) -> Response:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; the server's log has the details"},
                            status_code=500)

    routes = [
        Route("/", index),
        Route("/api/models", list_models),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/digits", digits, methods=["GET", "POST"]),
        Route("/api/finetune", finetune, methods=["POST"]),
        Route("/api/train", train, methods=["GET", "POST"]),
        Route("/api/train/stop", stop, methods=["POST"]),
        Route("/api/train/events", events),
        Route("/api/models/{name}/download", download),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, ServiceError: service_error,
                            HTTPException: http_error, Exception: internal_error},
        middleware=[Middleware(HostCheck, hosts=allowed_hosts)] if allowed_hosts else None,
    )
    app.state.service = service
    #: Set when the server is shutting down: open event streams end at once.
    app.state.stopping = threading.Event()
    return app


async def _event_stream(request: Request, service: Service, since: int, follow: bool,
                        stopping: threading.Event):
    """Server-Sent Events: each training event as ``data: {json}``, following new jobs.

    Starts at event ``since`` of the current job; when a new job starts, its
    events follow from the first. With ``follow=0`` the stream ends once the
    current job has finished and all its events are sent.
    """
    yield "retry: 1000\n\n"
    job_id, index = None, since
    idle = 0.0
    while True:
        job = service.trainer.job
        if job is not None:
            if job.id != job_id:
                if job_id is not None:
                    index = 0
                job_id = job.id
            pending = job.events[index:]
            for event in pending:
                yield f"data: {json.dumps(event)}\n\n"
            index += len(pending)
            if pending:
                idle = 0.0
            if not follow and job.finished and index >= len(job.events):
                return
        elif not follow:
            return
        if stopping.is_set() or await request.is_disconnected():
            return
        await asyncio.sleep(0.1)
        idle += 0.1
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ": keep-alive\n\n"
