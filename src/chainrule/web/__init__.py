"""``chainrule serve``: a local web page to draw digits, look inside the network and train it.

Needs the ``web`` extra (Starlette and uvicorn): ``pip install "chainrule[web]"``.

>>> from chainrule.web import create_app
>>> app = create_app(["mnist-mlp.safetensors"])          # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, host="127.0.0.1")   # doctest: +SKIP
"""

from .app import MAX_BODY_BYTES, MAX_IMAGE_SIDE, create_app
from .service import Service

__all__ = ["create_app", "Service", "MAX_BODY_BYTES", "MAX_IMAGE_SIDE"]
