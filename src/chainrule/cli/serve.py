"""``chainrule serve``: a local web page to draw digits, look inside the model, and train one."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Any

from ._common import DEFAULT_MODEL, non_negative_int, require


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="a web page: draw a digit, look inside, teach it, train",
        description="Serve a local web page where you draw a digit and see what the network "
        "sees, its probabilities and its first layer; label your drawings and fine-tune on "
        "them; and train a network while watching its loss, weights and health. With no "
        f"MODEL it uses ./{DEFAULT_MODEL}, training it on first use (a minute or so) if it "
        "is missing. Needs the web extra: pip install \"chainrule[web]\".")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=".safetensors models to offer (default: ./" + DEFAULT_MODEL + ")")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="default 8000")
    p.add_argument("--workdir", default="chainrule-web", metavar="DIR",
                   help="where labelled drawings (DIR/my-digits, IDX files) and models made "
                   "on the page (DIR/models) go (default ./chainrule-web)")
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    require("starlette", "web")
    require("uvicorn", "web")
    require("PIL", "web")
    if args.port > 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    import uvicorn

    from ..training import Callback
    from ..web import Service, create_app
    from ..web.app import LOOPBACK_HOSTS
    from ._common import load_model

    models = list(args.models)
    for path in models:
        load_model(path)  # a missing or broken file is an error now, not in the browser
    train_default = False
    if not models:
        if Path(DEFAULT_MODEL).is_file():
            models = [DEFAULT_MODEL]
        else:
            train_default = True
    service = Service(models, workdir=args.workdir)
    if train_default:
        class Progress(Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
                acc = logs.get("val_accuracy", float("nan"))
                print(f"default model: epoch {epoch + 1}, validation accuracy {acc:.1%}",
                      flush=True)

        print(f"no {DEFAULT_MODEL} here: training the default digit model in the background "
              "(progress on the page and below); it is saved here for next time", flush=True)
        service.train_default(DEFAULT_MODEL, callbacks=[Progress()])
    if not is_loopback(args.host):
        print(f"chainrule: warning: listening on {args.host}, not only this computer: anyone "
              "who can reach this address can use the page and train on this machine",
              file=sys.stderr, flush=True)
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"chainrule serve: open http://{url_host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    # On a loopback address only pages opened as 127.0.0.1 / localhost may call the API.
    hosts = LOOPBACK_HOSTS if is_loopback(args.host) else None
    app = create_app(service=service, allowed_hosts=hosts)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", timeout_graceful_shutdown=5))
    handle_exit = server.handle_exit

    def stop(sig: int, frame: Any) -> None:
        # Open pages hold event streams; they end when told the server is stopping.
        app.state.stopping.set()
        handle_exit(sig, frame)

    server.handle_exit = stop  # type: ignore[method-assign]
    server.run()
    return 0
