"""`g2face serve`'s API with Starlette's TestClient and the tiny random model: round trips through
the downloaded file, the one-line messages for bad uploads, and an empty temp space afterwards."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the web page needs the `web` extra: pip install -e '.[web]'")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the `dev` extra)")
from click.testing import CliRunner
from starlette.testclient import TestClient

from g2face.cli import cli
from g2face.io import read_image
from g2face.models.zoo import build_model, tiny_config
from g2face.pipeline.g2face import G2FacePipeline
from g2face.web import SharedPipelines, WebSettings, create_app, is_loopback

PASSWORD = "correct horse battery staple"
HEADERS = {"X-G2Face": "1"}


@pytest.fixture(scope="module")
def pipelines() -> SharedPipelines:
    return SharedPipelines.of(G2FacePipeline(build_model(tiny_config())), "tiny")


@pytest.fixture
def temp_root(tmp_path):
    root = tmp_path / "server-temp"
    root.mkdir()
    return root


@pytest.fixture
def client(pipelines, temp_root):
    settings = WebSettings(max_upload_mb=2, max_pixels=2_000_000, temp_root=temp_root)
    with TestClient(create_app(settings, pipelines), base_url="http://127.0.0.1") as c:
        yield c


def _submit(client, name, data, *, action="anonymize", password=PASSWORD, **fields):
    form = {"action": action, "password": password, **fields}
    return client.post("/api/jobs", data=form, files={"photo": (name, data)}, headers=HEADERS)


def _wait(client, job_id, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["state"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _run(client, name, data, **kwargs) -> dict:
    response = _submit(client, name, data, **kwargs)
    assert response.status_code == 202, response.text
    return _wait(client, response.json()["id"]) | {"id": response.json()["id"]}


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def photo(fixtures_dir) -> bytes:
    return (fixtures_dir / "grace_hopper.jpg").read_bytes()


def _decode(data: bytes, tmp_path, name="download.png"):
    path = tmp_path / name
    path.write_bytes(data)
    return read_image(path)


def test_anonymize_download_recover_round_trip_is_exact(client, photo, fixtures_dir, tmp_path, temp_root):
    original = read_image(fixtures_dir / "grace_hopper.jpg").rgb
    anonymized = _run(client, "grace hopper.jpg", photo)
    assert anonymized["state"] == "done", anonymized
    result = anonymized["result"]
    assert (result["width"], result["height"]) == (original.shape[1], original.shape[0])
    assert [f["status"] for f in result["faces"]] == ["anonymized"]
    assert result["download_name"] == "grace hopper.anonymized.png"

    download = client.get(f"/api/jobs/{anonymized['id']}/download")
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert "grace%20hopper.anonymized.png" in download.headers["content-disposition"]
    assert download.headers["cache-control"] == "no-store"
    loaded = _decode(download.content, tmp_path)
    assert loaded.block is not None  # the recovery container travels in the downloaded file
    x0, y0, x1, y1 = (int(round(v)) for v in result["faces"][0]["box"])
    assert np.any(loaded.rgb[y0:y1, x0:x1] != original[y0:y1, x0:x1])
    for which in ("before", "after"):
        preview = client.get(f"/api/jobs/{anonymized['id']}/{which}.jpg")
        assert preview.status_code == 200 and preview.content.startswith(b"\xff\xd8")

    recovered = _run(client, "grace hopper.anonymized.png", download.content, action="recover")
    assert recovered["state"] == "done", recovered
    assert [f["status"] for f in recovered["result"]["faces"]] == ["exact"]
    assert recovered["result"]["download_name"] == "grace hopper.anonymized.recovered.png"
    back = client.get(f"/api/jobs/{recovered['id']}/download")
    np.testing.assert_array_equal(_decode(back.content, tmp_path, "back.png").rgb, original)

    archive = client.get(f"/api/zip?ids={anonymized['id']},{recovered['id']}")
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == [
            "grace hopper.anonymized.png",
            "grace hopper.anonymized.recovered.png",
        ]
    assert list(temp_root.iterdir()) == []


def test_a_face_to_review_is_named_on_the_page(client, photo, pipelines, monkeypatch):
    """A fake the anonymizer could not make meet all its goals (`AnonymizedFace.shortfalls`) is
    named with what to check in the face's line."""
    import dataclasses

    pipeline = pipelines.load()
    anonymize = pipeline.anonymize

    def with_a_shortfall(*args, **kwargs):
        result = anonymize(*args, **kwargs)
        faces = tuple(dataclasses.replace(f, shortfalls=("glasses added",)) for f in result.faces)
        return dataclasses.replace(result, faces=faces)

    monkeypatch.setattr(pipeline, "anonymize", with_a_shortfall)
    done = _run(client, "grace hopper.jpg", photo)
    assert done["state"] == "done", done
    assert [f["detail"].split("; ")[-1] for f in done["result"]["faces"]] == ["check: glasses added"]


def test_wrong_password_is_reported_per_face_with_nothing_to_download(client, photo):
    anonymized = _run(client, "a.jpg", photo)
    download = client.get(f"/api/jobs/{anonymized['id']}/download").content
    recovered = _run(client, "a.anonymized.png", download, action="recover", password="not the password")
    result = recovered["result"]
    assert [f["status"] for f in result["faces"]] == ["wrong password"]
    assert "recovery not verified (wrong password or key" in result["message"]
    assert result["download_name"] is None
    assert client.get(f"/api/jobs/{recovered['id']}/download").status_code == 404


def test_key_file_instead_of_password(client, photo, tmp_path):
    key = bytes(range(32))
    response = client.post(
        "/api/jobs",
        data={"action": "anonymize", "method": "blur", "format": "webp"},
        files={"photo": ("a.jpg", photo), "key_file": ("my.key", key)},
        headers=HEADERS,
    )
    body = _wait(client, response.json()["id"])
    assert body["state"] == "done" and body["result"]["download_name"] == "a.anonymized.webp"
    bad = client.post(
        "/api/jobs",
        data={"action": "anonymize"},
        files={"photo": ("a.jpg", photo), "key_file": ("notes.txt", b"hello")},
        headers=HEADERS,
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "notes.txt is not a g2face key file (a key must be 32 bytes, got 5)"


def test_bad_uploads_get_the_cli_messages(client, fixtures_dir, tmp_path, temp_root):
    not_an_image = _run(client, "notes.txt", b"just some text, not a picture")
    assert not_an_image["state"] == "failed"
    assert (
        not_an_image["error"] == "notes.txt: not an image format g2face can read; convert it to PNG or JPEG"
    )

    truncated = _run(client, "cut.jpg", (fixtures_dir / "grace_hopper.jpg").read_bytes()[:3000])
    assert truncated["error"].startswith("cut.jpg: cannot decode")
    assert "truncated or corrupt" in truncated["error"]

    no_face = _run(client, "wall.png", _png(np.full((64, 80, 3), 128, np.uint8)))
    assert no_face["error"] == "wall.png: no face found; nothing to anonymize"

    too_many_pixels = _run(client, "wide.png", _png(np.zeros((1000, 2100, 3), np.uint8)))
    assert too_many_pixels["error"] == (
        "wide.png: 2100×1000 (2.1 MP) is over this server's limit of 2 MP; "
        "downscale it (or start `g2face serve --max-pixels N`)"
    )

    too_big = _submit(client, "big.png", np.random.default_rng(0).bytes(3 * 2**20))
    assert too_big.status_code == 413
    assert "is over this server's upload limit of 2 MB" in too_big.json()["error"]

    no_password = _submit(client, "a.png", b"x", password="")
    assert no_password.status_code == 400
    assert no_password.json()["error"] == "enter a password or choose a key file"
    assert list(temp_root.iterdir()) == []


def test_weak_password_is_warned_about(client, photo):
    response = _submit(client, "a.jpg", photo, password="abc")
    assert response.status_code == 202
    assert response.json()["warnings"][0].startswith("weak password")
    _wait(client, response.json()["id"])


def test_temp_space_is_empty_after_twenty_uploads_including_failures(client, photo, temp_root, monkeypatch):
    import g2face.web.process

    read_from = []
    monkeypatch.setattr(
        g2face.web.process, "read_image", lambda path: read_from.append(path) or read_image(path)
    )
    bad = [b"not an image", photo[:2000], _png(np.zeros((40, 40, 3), np.uint8))]
    ids = []
    for i in range(20):
        data = photo if i % 2 == 0 else bad[i % 3]
        response = _submit(client, f"photo{i}.jpg", data, method="box")
        assert response.status_code == 202
        ids.append(response.json()["id"])
    states = [_wait(client, i)["state"] for i in ids]
    assert states.count("done") == 10 and states.count("failed") == 10
    assert len(read_from) == 20 and all(temp_root in p.parents for p in read_from)  # the temp space was used
    assert list(temp_root.rglob("*")) == []


def test_state_changing_requests_need_the_page_header(client, photo):
    response = client.post(
        "/api/jobs", data={"action": "anonymize", "password": PASSWORD}, files={"photo": ("a.jpg", photo)}
    )
    assert response.status_code == 403


def test_only_loopback_host_names_are_answered(client):
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    page = client.get("/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/config").json()["max_upload_bytes"] == 2 * 2**20


def test_queue_refuses_more_than_max_waiting(pipelines, photo, temp_root):
    settings = WebSettings(max_waiting=1, temp_root=temp_root)
    with TestClient(create_app(settings, pipelines), base_url="http://127.0.0.1") as c:
        responses = [_submit(c, f"{i}.jpg", photo, method="box") for i in range(3)]
        codes = [r.status_code for r in responses]
        assert 503 in codes
        refused = responses[codes.index(503)].json()["error"]
        assert "photos are already waiting; try again when they are done" in refused
        for r in responses:
            if r.status_code == 202:
                _wait(c, r.json()["id"])


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_serve_command_warns_about_a_public_host_and_reports_a_missing_model(tmp_path):
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "none.safetensors")]
    )
    assert result.exit_code == 1
    assert "WARNING: listening on 0.0.0.0, not on this computer only" in result.output
    assert "none.safetensors" in result.output


def test_finished_results_are_dropped_oldest_first_over_the_byte_budget():
    from g2face.payload import Secret
    from g2face.web.jobs import JobQueue
    from g2face.web.process import Outcome, Upload

    def fake_process(upload: Upload) -> Outcome:
        return Outcome(upload.name, 1, 1, [], b"", b"", b"x" * 400, "out.png", "image/png")

    jobs = JobQueue(fake_process, max_waiting=10, keep_bytes=1000)
    secret = Secret.from_password(PASSWORD)
    submitted = [jobs.submit(Upload(f"{i}.png", b"data", "anonymize", secret)) for i in range(4)]
    jobs.close()  # the worker finishes what was queued, then stops
    assert [jobs.get(j.id) is not None for j in submitted] == [False, False, True, True]
    assert all(j.upload is None for j in submitted)  # photo bytes and secret dropped once processed
