"""Image decoding of every common variant, actionable read errors, atomic metadata-free writing,
input expansion and crop ↔ tensor conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from g2face.io import (
    ImageReadError,
    ImageWriteError,
    expand_inputs,
    output_format,
    read_image,
    write_image,
    write_json,
)


@pytest.fixture
def rgb() -> np.ndarray:
    ys, xs = np.mgrid[0:48, 0:64]
    return np.dstack([xs * 4, ys * 5, (xs + ys) * 2]).astype(np.uint8)


def test_reads_rgb_png_exactly(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.alpha is None and loaded.format == "PNG"


def test_grey_palette_and_cmyk_become_rgb(tmp_path, rgb):
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.gif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    grey = read_image(tmp_path / "grey.png").rgb
    assert grey.shape == (48, 64, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert np.abs(read_image(tmp_path / "pal.gif").rgb.astype(int) - rgb).mean() < 8
    assert np.abs(read_image(tmp_path / "cmyk.jpg").rgb.astype(int) - rgb).mean() < 8


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    loaded = read_image(tmp_path / "g16.png").rgb
    np.testing.assert_array_equal(loaded[..., 0], np.rint(values / 257).astype(np.uint8))


def test_alpha_is_kept_apart(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:10] = 0
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(loaded.rgb, rgb)
    np.testing.assert_array_equal(loaded.alpha, alpha)
    Image.fromarray(np.dstack([rgb, np.full_like(alpha, 255)])).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png").alpha is None


def test_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90° clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.png", exif=exif)
    upright = read_image(tmp_path / "rot.png").rgb
    np.testing.assert_array_equal(upright, np.rot90(rgb, k=-1))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not an image\n"), "not an image format"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_read_errors_are_one_actionable_line(tmp_path, make, fragment):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageReadError, match=fragment) as err:
        read_image(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_reported(tmp_path, rgb, fmt):
    noisy = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "full", format=fmt)
    data = (tmp_path / "full").read_bytes()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(tmp_path / "cut")


def test_write_is_atomic_strips_metadata_and_follows_the_suffix(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    Image.fromarray(rgb).save(tmp_path / "in.jpg", exif=exif)
    loaded = read_image(tmp_path / "in.jpg")
    for name, fmt in [("out.png", "PNG"), ("sub/dir/out.webp", "WEBP"), ("out.JPG", "JPEG")]:
        written = write_image(tmp_path / name, loaded.rgb)
        with Image.open(written) as im:
            assert im.format == fmt and not im.getexif() and "xmp" not in im.info
    assert not list(tmp_path.rglob("*.tmp"))
    assert b"SecretCam" not in (tmp_path / "out.JPG").read_bytes()
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(tmp_path / "out.xyz", rgb)
    assert output_format("a.tif") == "TIFF"


def test_alpha_is_written_where_the_format_supports_it(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 128, np.uint8)
    with Image.open(write_image(tmp_path / "a.png", rgb, alpha=alpha)) as im:
        assert im.mode == "RGBA"
    with Image.open(write_image(tmp_path / "a.jpg", rgb, alpha=alpha)) as im:
        assert im.mode == "RGB"


def test_inputs_are_never_overwritten_without_force(tmp_path, rgb):
    src = tmp_path / "in.png"
    Image.fromarray(rgb).save(src)
    before = src.read_bytes()
    with pytest.raises(ImageWriteError, match="refusing to overwrite an input"):
        write_image(src, np.zeros_like(rgb), protected=[src])
    with pytest.raises(ImageWriteError, match="refusing"):
        write_json(src, {}, protected=[src])
    assert src.read_bytes() == before
    write_image(src, np.zeros_like(rgb), protected=[src], force=True)
    assert read_image(src).rgb.max() == 0


def test_failed_write_leaves_no_file(tmp_path, rgb):
    with pytest.raises(ValueError):
        write_image(tmp_path / "bad.png", rgb[..., 0])
    assert not list(tmp_path.iterdir())


def test_expand_inputs_files_folders_globs_and_problems(tmp_path, rgb):
    tree = tmp_path / "photos"
    for rel in ["a.jpg", "sub/b.png", "sub/deeper/c.webp", ".hidden/d.png", "sub/notes.txt"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    expanded = expand_inputs(
        [
            tree,
            tree / "a.jpg",
            str(tree / "sub" / "**" / "*.png"),
            tmp_path / "empty",
            tmp_path / "missing.jpg",
            str(tmp_path / "*.nothing"),
        ]
    )
    assert [f.relative.as_posix() for f in expanded.files] == ["a.jpg", "sub/b.png", "sub/deeper/c.webp"]
    assert expanded.files[1].output_path(tmp_path / "out", ".png") == tmp_path / "out" / "sub" / "b.png"
    messages = [p.message for p in expanded.problems]
    assert len(messages) == 3
    assert (
        "folder has no images" in messages[0]
        and "no such file" in messages[1]
        and "matches no images" in messages[2]
    )


def test_glob_keeps_paths_relative_to_its_root(tmp_path):
    for rel in ["x/1.png", "x/y/2.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    expanded = expand_inputs([str(tmp_path / "x" / "**" / "*.png")])
    assert sorted(f.relative.as_posix() for f in expanded.files) == ["1.png", "y/2.png"]


def test_crop_tensor_round_trip_is_exact():
    torch = pytest.importorskip("torch")
    from g2face.nn.crops import crops_to_tensor, tensor_to_crops

    crops = np.random.default_rng(3).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    t = crops_to_tensor(crops)
    assert t.shape == (3, 3, 16, 16) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(tensor_to_crops(t), crops)
    np.testing.assert_array_equal(tensor_to_crops(crops_to_tensor(list(crops), dtype=torch.float64)), crops)
    with pytest.raises(ValueError):
        crops_to_tensor(crops.astype(np.float32))
