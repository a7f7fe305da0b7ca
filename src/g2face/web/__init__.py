"""`g2face serve`: a local web page to anonymize and recover photos (Starlette + uvicorn).

from g2face.web import SharedPipelines, WebSettings, create_app, serve
serve(WebSettings(port=8000), SharedPipelines.from_pretrained("g2face-lite"))
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

from g2face.web.app import WebSettings, create_app, is_loopback
from g2face.web.pipelines import SharedPipelines

__all__ = ["SharedPipelines", "WebSettings", "background_server", "create_app", "is_loopback", "serve"]


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


@contextlib.contextmanager
def background_server(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` from a thread on a free port of `host` (tests, screenshots); yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the web server did not start")
            threading.Event().wait(0.02)
        yield f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
