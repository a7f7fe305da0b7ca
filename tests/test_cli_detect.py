"""`g2face detect` as a black box: every bad-input case and every input format."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from g2face.cli.detect import detect


@pytest.fixture(scope="module")
def portrait(request) -> np.ndarray:
    """The astronaut at 256 px: one face, quick to detect."""
    path = Path(request.config.rootpath) / "tests" / "fixtures" / "astronaut.png"
    return cv2.resize(np.asarray(Image.open(path).convert("RGB")), (256, 256), interpolation=cv2.INTER_AREA)


def _run(*args: str | Path):
    return CliRunner().invoke(detect, [str(a) for a in args])


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _make_bad(kind: str, folder: Path) -> Path:
    path = folder / {"missing": "missing.jpg", "empty_folder": "nothing", "unsupported": "notes.txt"}.get(
        kind, "x.jpg"
    )
    if kind == "zero_size":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
            path, quality=95
        )
        path.write_bytes(path.read_bytes()[:600])
    elif kind == "corrupt":
        path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)
    elif kind == "unsupported":
        path.write_text("a text file\n")
    elif kind == "empty_folder":
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "readme.md").write_text("no images\n")
    elif kind == "no_face":
        Image.fromarray(np.full((120, 160, 3), 140, np.uint8)).save(path)
    return path


BAD = {
    "missing": "no such file",
    "zero_size": "empty file",
    "truncated": "truncated or corrupt",
    "corrupt": "truncated or corrupt",
    "unsupported": "not an image format",
    "empty_folder": "folder has no images",
    "no_face": "no face found",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_alone_fails_with_one_line_and_writes_only_the_report(tmp_path, kind):
    bad = _make_bad(kind, tmp_path)
    before = _files(tmp_path)
    result = _run(bad, "--json", tmp_path / "out.json", "--draw", tmp_path / "drawn.png")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and BAD[kind] in errors[0] and str(bad) in errors[0]
    assert "1 input: 0 done, 1 failed" in result.stderr
    assert result.stdout == ""
    assert _files(tmp_path) == sorted([*before, "out.json"])
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["images"] == [] and BAD[kind] in document["failed"][0]["error"]


def test_bad_inputs_do_not_stop_good_ones(tmp_path, portrait):
    Image.fromarray(portrait).save(tmp_path / "good.png")
    bad = []
    for kind in sorted(BAD):
        (tmp_path / kind).mkdir()
        bad.append(_make_bad(kind, tmp_path / kind))
    result = _run(*bad[:3], tmp_path / "good.png", *bad[3:], "--json", tmp_path / "out.json")
    assert result.exit_code == 1
    assert f"{tmp_path / 'good.png'}: 1 face" in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == len(BAD)
    assert f"{len(BAD) + 1} inputs: 1 done, {len(BAD)} failed" in result.stderr
    document = json.loads((tmp_path / "out.json").read_text())
    assert [Path(i["path"]).name for i in document["images"]] == ["good.png"]
    assert len(document["failed"]) == len(BAD)


def _variant(kind: str, portrait: np.ndarray, folder: Path) -> Path:
    image = Image.fromarray(portrait)
    if kind == "grey":
        path, image = folder / "grey.png", image.convert("L")
    elif kind == "rgba":
        path, image = (
            folder / "rgba.png",
            Image.fromarray(np.dstack([portrait, np.full((256, 256), 255, np.uint8)])),
        )
        image.putpixel((0, 0), (0, 0, 0, 0))
    elif kind == "grey16":
        path, image = folder / "grey16.png", Image.fromarray(portrait.mean(axis=2).astype(np.uint16) * 257)
    elif kind == "palette":
        path, image = folder / "palette.gif", image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    elif kind == "cmyk":
        path, image = folder / "cmyk.jpg", image.convert("CMYK")
    else:
        path = folder / "rotated.jpg"
        exif = Image.Exif()
        exif[0x0112] = 8  # displayed after rotating 90° counter-clockwise
        image.transpose(Image.Transpose.ROTATE_270).save(path, exif=exif, quality=95)
        return path
    image.save(path)
    return path


def _landmarks(result_json: Path) -> np.ndarray:
    face = json.loads(result_json.read_text())["images"][0]["faces"][0]
    return np.array(list(face["landmarks"].values()))


@pytest.mark.parametrize("kind", ["grey", "rgba", "grey16", "palette", "cmyk", "exif_rotated"])
def test_every_input_format_yields_the_face(tmp_path, portrait, kind):
    Image.fromarray(portrait).save(tmp_path / "reference.png")
    assert _run(tmp_path / "reference.png", "--json", tmp_path / "reference.json").exit_code == 0
    path = _variant(kind, portrait, tmp_path)
    result = _run(path, "--json", tmp_path / "out.json", "--draw", tmp_path / "drawn.png")
    assert result.exit_code == 0, result.output
    # the same landmarks as on the plain RGB image: decoded upright, colours close enough
    assert np.abs(_landmarks(tmp_path / "out.json") - _landmarks(tmp_path / "reference.json")).max() < 3
    assert Image.open(tmp_path / "drawn.png").size == (256, 256)


def test_folder_input_draws_a_mirrored_tree(tmp_path, portrait):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(portrait).save(src / "a.jpg")
    Image.fromarray(portrait[:, ::-1]).save(src / "trip" / "b.png")
    result = _run(src, "--draw", tmp_path / "drawn")
    assert result.exit_code == 0 and "2 inputs: 2 done, 0 failed" in result.stderr
    assert _files(tmp_path / "drawn") == ["a.jpg", "trip/b.png"]


def test_draw_file_with_several_inputs_is_a_usage_error(tmp_path, portrait):
    for name in ("a.png", "b.png"):
        Image.fromarray(portrait).save(tmp_path / name)
    result = _run(tmp_path / "a.png", tmp_path / "b.png", "--draw", tmp_path / "out.png")
    assert result.exit_code == 2 and "name a folder" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_outputs_never_overwrite_an_input_without_force(tmp_path, portrait):
    src = tmp_path / "a.png"
    Image.fromarray(portrait).save(src)
    before = src.read_bytes()
    result = _run(src, "--draw", src)
    assert result.exit_code == 1 and "refusing to overwrite an input" in result.stderr
    assert src.read_bytes() == before
    assert _run(src, "--draw", src, "--force").exit_code == 0
    assert src.read_bytes() != before


def test_help_lists_the_options():
    result = _run("--help")
    assert result.exit_code == 0
    for option in ("--json", "--draw", "--device", "--min-score", "--force"):
        assert option in result.output
