"""The Starlette application behind `g2face serve`: one static page and a small JSON API.

POST /api/jobs takes one photo (multipart: photo, action, method, format, password or key_file)
and answers at once with a job id; the page polls GET /api/jobs/{id} and then fetches the
previews, the download, or a zip of several downloads. Uploads are parsed into memory (never
spooled to disk by the multipart parser); the worker writes each to a private temp folder only
for the moment `read_image` needs a path.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import create_form_parser
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from g2face.payload import Secret, SecretError
from g2face.payload.secret import password_weakness
from g2face.types import InputError
from g2face.web.jobs import Job, JobQueue, QueueFullError
from g2face.web.pipelines import SharedPipelines
from g2face.web.process import (
    METHODS,
    OUTPUT_FORMATS,
    Limits,
    Upload,
    UploadTooLargeError,
    display_name,
    process,
    too_large_message,
)

STATIC = Path(__file__).parent / "static"
# Requests that change state must carry this header: a page on another site cannot add it without a
# CORS preflight, which this server never grants, so it cannot submit photos to a local server.
REQUEST_HEADER = "x-g2face"
_FORM_SLACK = 64 * 1024  # multipart boundaries and the small text fields around the photo


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 40
    max_pixels: int = 50_000_000
    max_waiting: int = 64  # photos queued at once; more are refused with "try again"
    keep_mb: float = 1024  # finished results kept in memory for download (oldest dropped first)
    temp_root: Path | None = None  # where each photo's private temp folder is made (default: the system's)

    @property
    def limits(self) -> Limits:
        return Limits(int(self.max_upload_mb * 2**20), self.max_pixels)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(settings: WebSettings, pipelines: SharedPipelines) -> Starlette:
    """The application; `pipelines` supplies the (lazily loaded, shared) model per method."""
    limits = settings.limits
    jobs = JobQueue(
        lambda upload: process(upload, pipelines.get, limits, settings.temp_root),
        max_waiting=settings.max_waiting,
        keep_bytes=int(settings.keep_mb * 2**20),
    )

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "max_upload_bytes": limits.max_upload_bytes,
                "max_pixels": limits.max_pixels,
                "methods": list(METHODS),
                "formats": list(OUTPUT_FORMATS),
                "model": pipelines.name,
            }
        )

    async def submit(request: Request) -> Response:
        if REQUEST_HEADER not in request.headers:
            return _error(403, f"missing the {REQUEST_HEADER} header (requests come from the g2face page)")
        try:
            fields, files = await _read_form(request, limits.max_upload_bytes + _FORM_SLACK)
            upload, warnings = _upload(fields, files)
            job = jobs.submit(upload)
        except UploadTooLargeError as e:
            return _error(413, str(e))
        except QueueFullError as e:
            return _error(503, str(e))
        except (InputError, SecretError) as e:
            return _error(400, str(e))
        return JSONResponse({"id": job.id, "name": job.name, "warnings": warnings}, status_code=202)

    async def status(request: Request) -> Response:
        job = _job(request)
        if job is None:
            return _gone()
        body = {"id": job.id, "name": job.name, "action": job.action, "state": job.state}
        if job.state == "queued":
            body["position"] = jobs.position(job)
        if job.error:
            body["error"] = job.error
        if job.outcome is not None:
            o = job.outcome
            body["result"] = {
                "width": o.width,
                "height": o.height,
                "faces": [asdict(f) for f in o.faces],
                "message": o.message,
                "warnings": o.warnings,
                "download_name": o.download_name if o.download is not None else None,
            }
        return JSONResponse(body, headers=_PRIVATE)

    async def preview(request: Request) -> Response:
        job = _job(request)
        if job is None or job.outcome is None:
            return _gone()
        data = job.outcome.before if request.path_params["which"] == "before" else job.outcome.after
        return Response(data, media_type="image/jpeg", headers=_PRIVATE)

    async def download(request: Request) -> Response:
        job = _job(request)
        if job is None or job.outcome is None or job.outcome.download is None:
            return _gone()
        o = job.outcome
        return Response(o.download, media_type=o.media_type, headers=_PRIVATE | _attachment(o.download_name))

    async def forget(request: Request) -> Response:
        if REQUEST_HEADER not in request.headers:
            return _error(403, f"missing the {REQUEST_HEADER} header")
        jobs.forget(request.path_params["job_id"])
        return Response(status_code=204)

    async def zip_all(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        found = [j for j in map(jobs.get, ids) if j is not None and j.outcome and j.outcome.download]
        if not found:
            return _gone()
        data = await run_in_threadpool(_zip, found)
        name = "g2face-anonymized.zip" if found[0].action == "anonymize" else "g2face-recovered.zip"
        return Response(data, media_type="application/zip", headers=_PRIVATE | _attachment(name))

    def _job(request: Request) -> Job | None:
        return jobs.get(request.path_params["job_id"])

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(jobs.close)

    loopback_hosts = ["127.0.0.1", "localhost", "[::1]", "::1"]
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/jobs", submit, methods=["POST"]),
            Route("/api/jobs/{job_id}", status),
            Route("/api/jobs/{job_id}", forget, methods=["DELETE"]),
            Route("/api/jobs/{job_id}/{which:str}.jpg", preview),
            Route("/api/jobs/{job_id}/download", download),
            Route("/api/zip", zip_all),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        # a loopback server answers only to loopback names, so a web page cannot reach it through
        # DNS rebinding
        middleware=[
            Middleware(
                TrustedHostMiddleware,
                allowed_hosts=loopback_hosts if is_loopback(settings.host) else ["*"],
            )
        ],
        lifespan=lifespan,
    )
    app.state.jobs = jobs
    return app


_PRIVATE = {"Cache-Control": "no-store"}
_PAGE_HEADERS = _PRIVATE | {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=_PRIVATE)


def _gone() -> Response:
    return _error(
        404, "no such result (the server was restarted or dropped it to save memory); process the photo again"
    )


def _attachment(name: str) -> dict[str, str]:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"}


async def _read_form(request: Request, limit: int) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The multipart form held in memory, refusing bodies over `limit` bytes as they arrive."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLargeError(too_large_message("upload", int(declared), limit - _FORM_SLACK))
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InputError("expected a multipart/form-data upload")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}

    def on_field(field) -> None:
        fields[field.field_name.decode("utf-8", "replace")] = (field.value or b"").decode("utf-8", "replace")

    def on_file(file) -> None:
        name = (file.file_name or b"").decode("utf-8", "surrogateescape")
        files[file.field_name.decode("utf-8", "replace")] = (name, file.file_object.getvalue())
        file.close()

    # files stay in memory (the size limit bounds them) instead of spilling into the system's temp
    parser = create_form_parser(
        {"Content-Type": content_type}, on_field, on_file, config={"MAX_MEMORY_FILE_SIZE": math.inf}
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadTooLargeError(too_large_message("upload", received, limit - _FORM_SLACK))
            parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise InputError(f"malformed upload ({e})") from None
    return fields, files


def _upload(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[Upload, list[str]]:
    if "photo" not in files:
        raise InputError("no photo in the upload")
    raw_name, data = files["photo"]
    name = display_name(raw_name)
    action = fields.get("action", "anonymize")
    method = fields.get("method", "g2face")
    fmt = fields.get("format", "png")
    if action not in ("anonymize", "recover"):
        raise InputError(f"unknown action {action!r}; use anonymize or recover")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    if not data:
        raise InputError(f"{name}: empty file (0 bytes); re-export or re-download it")
    warnings: list[str] = []
    key = files.get("key_file")
    if key is not None and key[1]:
        try:
            secret = Secret(key[1], "key")
        except SecretError as e:
            raise SecretError(f"{display_name(key[0])} is not a g2face key file ({e})") from None
    elif fields.get("password"):
        password = fields["password"]
        secret = Secret.from_password(password)
        weakness = password_weakness(password) if action == "anonymize" else None
        if weakness:
            warnings.append(
                f"weak password ({weakness}): whoever has the anonymized photo can try passwords "
                "offline; prefer 12+ varied characters, or a key file from `g2face keygen`"
            )
    else:
        raise SecretError("enter a password or choose a key file")
    return Upload(name, data, action, secret, method, fmt), warnings


def _zip(jobs: list[Job]) -> bytes:
    """Downloads side by side in one zip, stored (images are compressed already); repeated names get
    a number."""
    buffer, used = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for job in jobs:
            name = job.outcome.download_name
            stem, dot, suffix = name.rpartition(".")
            n = 1
            while name in used:
                n += 1
                name = f"{stem} ({n}){dot}{suffix}"
            used.add(name)
            archive.writestr(name, job.outcome.download)
    return buffer.getvalue()
