"""`g2face serve`: a local web page to anonymize and recover photos (Starlette + uvicorn).

from g2face.web import SharedPipelines, WebSettings, create_app, serve
serve(WebSettings(port=8000), SharedPipelines.from_pretrained("g2face-lite"))
"""

from __future__ import annotations

import logging

from g2face.web.app import WebSettings, create_app, is_loopback
from g2face.web.pipelines import SharedPipelines

__all__ = ["SharedPipelines", "WebSettings", "create_app", "is_loopback", "serve"]


def serve(settings: WebSettings, pipelines: SharedPipelines) -> None:
    """Run the page until interrupted. The model is loaded first, so a missing one fails here.
    Uvicorn's access log names only methods, paths and status codes: bodies (photos, passwords) and
    headers are never logged."""
    import uvicorn

    pipelines.load()
    logging.getLogger("g2face.web").setLevel(logging.INFO)
    uvicorn.run(
        create_app(settings, pipelines),
        host=settings.host,
        port=settings.port,
        log_level="info",
        server_header=False,
    )
