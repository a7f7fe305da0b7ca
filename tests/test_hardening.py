"""Issue 18: damaged metadata, failing writes, signals, unreadable folders, odd file names, existing
outputs, bad model files and bad dataset settings all end in one line per file, never a traceback
or a lost or clobbered file."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from conftest import REPO, fill
from g2face.cli import cli
from g2face.cli.detect import detect
from g2face.io import (
    ImageMetadataWarning,
    ImageReadError,
    ImageWriteError,
    OutputExistsError,
    expand_inputs,
    printable,
    read_image,
    write_image,
    write_json,
)
from g2face.pipeline.batch import process_each
from g2face.types import InputError


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


# ---------------------------------------------------------------- 1. damaged EXIF


def _jpeg_with_exif(rgb: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def _exif_breaking_mutations(data: bytes, count: int) -> list[bytes]:
    """Single-byte changes inside the EXIF block that make Pillow's exif_transpose raise."""
    from PIL import ImageOps

    start, found, rng = data.find(b"Exif"), [], np.random.default_rng(1)
    while len(found) < count:
        mutated = bytearray(data)
        mutated[start + int(rng.integers(0, 120))] = int(rng.integers(0, 256))
        try:
            with Image.open(io.BytesIO(bytes(mutated))) as im, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                ImageOps.exif_transpose(im)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, SyntaxError):
            found.append(bytes(mutated))
        except Exception as e:  # noqa: BLE001 - struct.error and other parse failures
            if type(e).__name__ == "error":
                found.append(bytes(mutated))
    return found


def test_damaged_exif_is_read_unrotated_with_a_warning_and_the_batch_goes_on(tmp_path, rgb):
    """Choice: the pixels are fine, so the image is used as stored (warning) rather than refused."""
    broken = _exif_breaking_mutations(_jpeg_with_exif(rgb), 3)
    for i, data in enumerate(broken):
        (tmp_path / f"{i}.jpg").write_bytes(data)
    Image.fromarray(rgb).save(tmp_path / "z_good.png")
    seen = []
    with pytest.warns(ImageMetadataWarning, match="damaged EXIF data ignored"):
        report = process_each(
            expand_inputs([tmp_path]), lambda item: seen.append(read_image(item.path).rgb.shape)
        )
    assert len(report.outcomes) == 4 and not report.failed
    assert seen[:3] == [(40, 56, 3)] * 3  # as stored: not rotated


def test_an_animation_is_read_as_its_first_frame_with_a_warning(tmp_path, rgb):
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageMetadataWarning, match="2 frames .* only the first is read"):
        loaded = read_image(tmp_path / "a.gif")
    first = np.asarray(Image.open(tmp_path / "a.gif").convert("RGB"))
    assert np.array_equal(loaded.rgb, first)


# ---------------------------------------------------------------- 2. write failures and signals


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (errno.ENOSPC, "no space left"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "another user"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_write_failures_are_one_line_and_leave_no_temp_file(tmp_path, rgb, monkeypatch, code, fragment):
    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError, match=fragment) as err:
        write_image(tmp_path / "out.png", rgb)
    assert "\n" not in str(err.value) and str(tmp_path / "out.png") in str(err.value)
    assert not list(tmp_path.iterdir())


def test_an_output_folder_that_is_a_file(tmp_path, rgb):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ImageWriteError, match="cannot create the folder .*a file stands where a folder"):
        write_image(tmp_path / "taken" / "out.png", rgb)


def test_full_and_read_only_file_systems(small_filesystem, rgb):
    full = small_filesystem(64)
    fill(full)
    with pytest.raises(ImageWriteError, match="no space left"):
        write_image(full / "out.png", rgb)
    assert sorted(p.name for p in full.iterdir()) == ["filler"]
    read_only = small_filesystem(64, read_only=True)
    with pytest.raises(ImageWriteError, match="read-only file system"):
        write_image(read_only / "sub" / "out.png", rgb)
    with pytest.raises(ImageWriteError, match="read-only file system"):
        write_json(read_only / "report.json", {})


def test_a_batch_goes_on_after_write_failures(tmp_path, monkeypatch):
    """detect --draw into a folder that refuses some writes: one line per file, the rest written."""
    portrait = Image.open(REPO / "tests" / "fixtures" / "astronaut.png").convert("RGB").resize((256, 256))
    for name in ("a.png", "b.png", "c.png"):
        portrait.save(tmp_path / name)
    real_open = os.open

    def refuse_b(path, flags, mode=0o777, **kwargs):
        if Path(path).name.startswith(".b.png."):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", refuse_b)
    drawn = tmp_path / "drawn"
    result = CliRunner().invoke(
        detect, [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")] + ["--draw", str(drawn)]
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.png: cannot write: permission denied" in errors[0]
    assert sorted(p.name for p in drawn.iterdir()) == ["a.png", "c.png"]
    assert not _temp_files(tmp_path)


_SLOW_WRITER = """
import signal, sys, time
from pathlib import Path
import numpy as np
from g2face.io import images

# As a process started from a shell: nothing blocked or ignored. A child inherits both from the
# test runner, and in a long full run SIGINT arrived ignored or blocked once (the child then slept
# its full 60 s); the behaviour under test is write_image's, not the runner's signal state.
signal.pthread_sigmask(signal.SIG_SETMASK, [])
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow_save(image, f, **options):
    f.write(b"partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

images.Image.Image.save = slow_save
images.write_image(Path(sys.argv[1]), np.zeros((4, 4, 3), np.uint8))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_temp_file(tmp_path, signum):
    """SIGTERM (which would kill on the spot) is turned into a clean-up and then the same death;
    SIGINT raises KeyboardInterrupt, which cleans up too."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(tmp_path / "out.png")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == b"writing"
        assert len(_temp_files(tmp_path)) == 1
        child.send_signal(signum)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert child.returncode in (-signum, 128 + signum, 1)  # killed by it, or KeyboardInterrupt
    assert not _temp_files(tmp_path) and not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------- 3. unreadable folders


def test_unreadable_paths_and_folders_are_problems_not_tracebacks(tmp_path, monkeypatch, rgb):
    (tmp_path / "ok").mkdir()
    Image.fromarray(rgb).save(tmp_path / "ok" / "a.png")
    (tmp_path / "ok" / "locked").mkdir()
    real_scandir, real_stat = os.scandir, Path.stat

    def scandir(path="."):  # root ignores permissions: imitate a folder of another user
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    def stat(self, **kwargs):
        if "secret" in self.parts:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "stat", stat)
    expanded = expand_inputs([tmp_path / "ok", tmp_path / "secret" / "x.jpg"])
    assert [f.path.name for f in expanded.files] == ["a.png"]
    messages = [p.message for p in expanded.problems]
    assert any("locked: cannot list this folder (Permission denied)" in m for m in messages)
    assert any("x.jpg: cannot access (Permission denied)" in m for m in messages)


def test_unreadable_formats_in_a_folder_are_a_notice(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for name in ("b.heic", "c.HEIC", "d.jxl"):
        (tmp_path / name).write_bytes(b"x")
    expanded = expand_inputs([tmp_path])
    assert [f.path.name for f in expanded.files] == ["a.png"]
    assert expanded.notices and "2 .heic, 1 .jxl" in expanded.notices[0]
    result = CliRunner().invoke(detect, [str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert "note: skipped 2 .heic, 1 .jxl file(s)" in result.stderr
    assert "2 .heic" in json.loads((tmp_path / "r.json").read_text())["notices"][0]


# ---------------------------------------------------------------- 4. no ICC profile in outputs


def test_input_icc_bytes_never_reach_an_output(tmp_path, rgb):
    marker = b"G2FACE-SMUGGLED-BYTES-0123456789"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + marker
    Image.fromarray(rgb).save(tmp_path / "in.png", icc_profile=profile)
    Image.fromarray(rgb).save(tmp_path / "in.jpg", icc_profile=profile, quality=95)
    for source in ("in.png", "in.jpg"):
        loaded = read_image(tmp_path / source)
        assert loaded.icc_profile is None
        for suffix in (".png", ".jpg", ".webp", ".tif"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                out = write_image(
                    tmp_path / f"out_{source}{suffix}", loaded.rgb, icc_profile=loaded.icc_profile
                )
            data = out.read_bytes()
            assert marker not in data and b"acsp" not in data  # no ICC profile at all
            with Image.open(out) as im:
                assert "icc_profile" not in im.info
    with pytest.warns(DeprecationWarning, match="icc_profile"):
        write_image(tmp_path / "legacy.png", rgb, icc_profile=profile)
    assert marker not in (tmp_path / "legacy.png").read_bytes()


def test_colours_are_converted_to_srgb(tmp_path, rgb):
    """A non-sRGB profile changes the pixels read (converted), an sRGB one does not."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "srgb.png", icc_profile=srgb)
    np.testing.assert_array_equal(read_image(tmp_path / "srgb.png").rgb, rgb)
    Image.fromarray(rgb).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    with pytest.warns(ImageMetadataWarning, match="damaged colour profile"):
        np.testing.assert_array_equal(read_image(tmp_path / "broken.png").rgb, rgb)


# ---------------------------------------------------------------- 6. existing outputs


def test_existing_outputs_are_untouched_without_force(tmp_path, rgb):
    target = tmp_path / "existing.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="exists; refusing to overwrite it"):
        write_image(target, rgb)
    with pytest.raises(OutputExistsError):
        write_json(target, {})
    assert target.read_bytes() == b"precious" and not _temp_files(tmp_path)
    write_image(target, rgb, force=True)
    assert read_image(target).rgb.shape == rgb.shape


def test_detect_never_overwrites_json_or_drawings_without_force(tmp_path):
    portrait = Image.open(REPO / "tests" / "fixtures" / "astronaut.png").convert("RGB").resize((256, 256))
    portrait.save(tmp_path / "a.png")
    (tmp_path / "notes.json").write_text("my notes")
    (tmp_path / "x.png").write_bytes(b"my drawing")
    result = CliRunner().invoke(detect, [str(tmp_path / "a.png"), "--json", str(tmp_path / "notes.json")])
    assert result.exit_code == 2 and "notes.json: exists" in result.stderr
    result = CliRunner().invoke(detect, [str(tmp_path / "a.png"), "--draw", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "x.png: exists" in result.stderr
    assert (tmp_path / "notes.json").read_text() == "my notes"
    assert (tmp_path / "x.png").read_bytes() == b"my drawing"
    args = [
        str(tmp_path / "a.png"),
        "--json",
        str(tmp_path / "notes.json"),
        "--draw",
        str(tmp_path / "x.png"),
    ]
    assert CliRunner().invoke(detect, [*args, "--force"]).exit_code == 0
    assert json.loads((tmp_path / "notes.json").read_text())["images"]


# ---------------------------------------------------------------- 8. odd file names


def test_non_utf8_and_newline_names_keep_one_line_per_file(tmp_path, rgb):
    folder = os.fsencode(tmp_path)
    names = [b"bad\xff\xfename.png", b"two\nlines.png", b"esc\x1b[31mred.png"]
    for name in names:
        Image.fromarray(rgb).save(os.fsdecode(os.path.join(folder, name)))
    result = CliRunner().invoke(detect, [str(tmp_path), "--json", str(tmp_path / "faces.json")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all("no face found" in line for line in errors)
    assert "\x1b" not in result.output and "bad\\xff\\xfename.png" in result.stderr
    assert "two\\nlines.png" in result.stderr
    document = json.loads((tmp_path / "faces.json").read_bytes().decode("utf-8"))
    listed = sorted(os.fsencode(os.path.basename(f["input"])) for f in document["failed"])
    assert listed == sorted(names)  # exact names survive the JSON round trip


def test_printable_escapes_only_what_breaks_a_line():
    assert printable("Zoë Ångström.jpg") == "Zoë Ångström.jpg"
    assert printable(os.fsdecode(b"a\xff\n\x1bb")) == "a\\xff\\n\\x1bb"


# ---------------------------------------------------------------- 7. bad model files


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from g2face.models.checkpoints import save_g2face
    from g2face.models.zoo import build_model, tiny_config

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_g2face(build_model(tiny_config()).net, path)
    return path


def _bad_model(kind: str, folder: Path, tiny_weights: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = folder / f"{kind}.safetensors"
    if kind == "not_safetensors":
        path.write_bytes(b"PK\x03\x04 a zip, not weights" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        state = load_file(tiny_weights)
        with safe_open(str(tiny_weights), "pt") as f:
            metadata = dict(f.metadata())
        if kind == "empty_config":
            metadata["config"] = "{}"
        elif kind == "no_config":
            metadata = {}
        elif kind == "missing_tensors":
            state = {k: v for i, (k, v) in enumerate(sorted(state.items())) if i % 3}
        save_file(state, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("kind", ["not_safetensors", "empty", "empty_config", "no_config", "missing_tensors"])
def test_a_bad_model_file_is_one_line(tmp_path, tiny_weights, kind):
    from g2face.models.zoo import ModelNotAvailableError, load_model

    path = _bad_model(kind, tmp_path, tiny_weights)
    with pytest.raises(ModelNotAvailableError, match="cannot load model") as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------- 9 and 12. data prepare, devices


def test_data_prepare_rejects_bad_settings_and_reports_bombs(tmp_path, monkeypatch, rgb):
    src, runner = tmp_path / "src", CliRunner()
    src.mkdir()
    Image.fromarray(rgb).save(src / "a.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(src / "bomb.png")
    prepare = ["data", "prepare", str(src)]
    for size in ("0", "-5", "100000"):
        result = runner.invoke(cli, [*prepare, str(tmp_path / "d"), "--aligned", "--size", size])
        assert result.exit_code == 2 and "--size" in result.output
    result = runner.invoke(cli, [*prepare, str(src / "crops"), "--aligned"])
    assert result.exit_code == 2 and "inside the source" in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.tex").write_text("mine")
    result = runner.invoke(cli, [*prepare, str(tmp_path / "taken"), "--aligned"])
    assert result.exit_code == 2 and "not a g2face dataset" in result.output
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 64×64 > 2×1500 > 40×56: one "bomb"
    result = runner.invoke(cli, [*prepare, str(tmp_path / "d"), "--aligned", "--size", "64"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {src / 'bomb.png'}: too many pixels (a decompression bomb?); skipped"
    ]


def test_bomb_message_reads_well(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(
        ImageReadError, match=r"over 2,000 pixels; it may be a decompression bomb\); downscale"
    ):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("command", [["detect", "x.png"], ["data", "prepare", "."]])
def test_a_bogus_device_is_a_usage_error(command):
    result = CliRunner().invoke(cli, [*command, "--device", "bogus"])
    assert result.exit_code == 2 and "'bogus' is not a device" in result.output


def test_an_internal_error_on_one_input_does_not_stop_the_batch(tmp_path, rgb):
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rgb).save(tmp_path / name)

    def handle(item):
        if item.path.name == "b.png":
            raise RuntimeError("boom\nsecond line")
        return item.path.name

    report = process_each(expand_inputs([tmp_path]), handle)
    assert [o.ok for o in report.outcomes] == [True, False, True]
    assert report.failed[0].error.endswith(
        "internal error (RuntimeError: boom second line); please report it"
    )


def test_prepare_runs_one_file_ahead_and_its_errors_are_that_files_outcome(tmp_path):
    """Folders overlap the next file's decoding/detection with this file's model (both cores),
    holding at most two files; a file `prepare` cannot read fails alone, in order."""
    for name in ("a", "b", "c", "d", "e"):
        (tmp_path / f"{name}.png").write_bytes(b"x")
    prepared_names: list[str] = []
    finished: list[object] = []
    most_ahead = 0

    def prepare(item):
        nonlocal most_ahead
        prepared_names.append(item.path.stem)
        most_ahead = max(most_ahead, len(prepared_names) - len(finished))
        if item.path.stem == "b":
            raise InputError(f"{item.path}: unreadable")
        return item.path.stem.upper()

    def handle(item, prepared):
        assert prepared == item.path.stem.upper()
        return prepared

    report = process_each(expand_inputs([tmp_path]), handle, finished.append, prepare=prepare)
    assert [o.result for o in report.outcomes] == ["A", None, "C", "D", "E"]
    assert report.outcomes[1].error.endswith("unreadable")
    assert prepared_names == ["a", "b", "c", "d", "e"] and most_ahead <= 2
