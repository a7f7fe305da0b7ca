"""The paper configuration: official-release importer, ArcFace / Deep3DFaceRecon / BFM09 backends,
payload layouts (secure repeated, reference float bits), and one paper-size forward."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from g2face import hub
from g2face.models import official
from g2face.payload import Secret
from g2face.payload.codec import PayloadCodec
from g2face.payload.layouts import ReferenceFloatPayload, RepeatedPayload
from g2face.priors.arcface import ArcFaceEncoder, IResNet
from g2face.priors.deep3d import BFM09, COEFFICIENTS, N_COEFFICIENTS, ReconNet


def _random_state(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: official._synthetic_tensor(name, {"shape": list(v.shape), "dtype": str(v.dtype)[6:]}, g)
        for name, v in module.state_dict().items()
    }


# ---------------------------------------------------------------- schema checks (default, fast)


def test_backends_have_the_released_keys_shapes_and_dtypes():
    schemas = official._schemas()
    with torch.device("meta"):
        arcface, recon = IResNet(), ReconNet()
    for module, schema in ((arcface, schemas["arcface"]), (recon, schemas["deep3d"])):
        ours = {k: (list(v.shape), str(v.dtype)[6:]) for k, v in module.state_dict().items()}
        assert ours == {k: (s["shape"], s["dtype"]) for k, s in schema.items()}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("layer2.3.conv1.weight"), "tensor layer2.3.conv1.weight is missing"),
        (lambda s: s.__setitem__("fc.weight", torch.zeros(512, 3)), "tensor fc.weight has shape [512, 3]"),
        (lambda s: s.__setitem__("fc.bias", torch.zeros(512, dtype=torch.float16)), "fc.bias has dtype"),
    ],
)
def test_a_wrong_tensor_gives_one_line_naming_it_and_the_file(tmp_path, edit, message):
    schema = official._schemas()["arcface"]
    g = torch.Generator().manual_seed(0)
    state = {k: official._synthetic_tensor(k, spec, g) for k, spec in schema.items()}
    edit(state)
    with pytest.raises(official.OfficialImportError) as e:
        official.check_state(state, schema, "ms1mv3_arcface_r50.pth")
    assert message in str(e.value) and "ms1mv3_arcface_r50.pth" in str(e.value)
    assert "\n" not in str(e.value)


def test_import_names_the_missing_files(tmp_path):
    (tmp_path / "G2Face.pth").write_bytes(b"")
    with pytest.raises(official.OfficialImportError, match="550000.pt, ms1mv3_arcface_r50.pth"):
        official.locate([tmp_path])


def test_a_missing_tensor_in_a_released_file_is_named_with_its_file_and_part(tmp_path):
    schema = official._schemas()["g2face"]["anonymous_net"]
    g = torch.Generator().manual_seed(0)
    state = {k: official._synthetic_tensor(k, spec, g) for k, spec in schema.items()}
    missing = next(iter(state))
    del state[missing]
    torch.save({"anonymous_net": state}, tmp_path / "G2Face.pth")
    with pytest.raises(official.OfficialImportError) as e:
        official.read_checked({"g2face": tmp_path / "G2Face.pth"})
    assert str(e.value) == f"{tmp_path / 'G2Face.pth'} [anonymous_net]: tensor {missing} is missing"


def test_a_missing_part_of_the_g2face_file_is_one_line(tmp_path):
    schemas = official._schemas()["g2face"]
    g = torch.Generator().manual_seed(0)
    parts = {
        part: {k: official._synthetic_tensor(k, spec, g) for k, spec in schemas[part].items()}
        for part in ("anonymous_net", "style_mlp")
    }
    torch.save(parts, tmp_path / "G2Face.pth")
    with pytest.raises(official.OfficialImportError, match=r"G2Face.pth: no 'map_2_id' state dict inside$"):
        official.read_checked({"g2face": tmp_path / "G2Face.pth"})


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"meanshape": np.zeros((1, 10), np.float32)},
            "array meanshape has shape [1, 10], expected [1, 107127]",
        ),
        ({"meanshape": np.zeros((1, 3 * official.BFM_N_VERTICES), np.float32)}, "array idBase is missing"),
    ],
)
def test_a_wrong_or_missing_bfm_array_is_one_line_naming_it(tmp_path, arrays, message):
    from scipy.io import savemat

    path = tmp_path / "BFM_model_front.mat"
    savemat(path, arrays)
    with pytest.raises(official.OfficialImportError) as e:
        official.read_bfm(path)
    assert str(e.value) == f"{path}: {message}"


def test_a_broken_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "G2Face.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(official.OfficialImportError, match="not a readable PyTorch checkpoint"):
        official._torch_load(bad)


# ---------------------------------------------------------------- backends


def test_arcface_reference_mode_is_a_nearest_resize_of_the_whole_crop():
    encoder = ArcFaceEncoder(_random_state(IResNet()), compat="reference")
    crops = torch.rand(2, 3, 256, 256) * 2 - 1
    expected = encoder.net(torch.nn.functional.interpolate(crops, (112, 112), mode="nearest"))
    assert torch.equal(encoder(crops), expected)  # raw, as the reference hides it
    secure = ArcFaceEncoder(_random_state(IResNet()))
    assert torch.allclose(secure(crops).norm(dim=1), torch.ones(2))


def _tiny_bfm(n: int = 50, f: int = 80, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "mean_shape": torch.randn(3 * n, generator=g),
        "id_base": torch.randn(3 * n, 80, generator=g) * 0.01,
        "exp_base": torch.randn(3 * n, 64, generator=g) * 0.01,
        "mean_tex": torch.rand(3 * n, generator=g) * 255,
        "tex_base": torch.randn(3 * n, 80, generator=g),
        "point_buf": torch.randint(0, f + 1, (n, 8), generator=g),
        "tri": torch.randint(0, n, (f, 3), generator=g),
        "keypoints": torch.randint(0, n, (68,), generator=g),
    }


def test_coefficient_ranges_tile_the_257_vector():
    bounds = sorted(COEFFICIENTS.values())
    assert bounds[0][0] == 0 and bounds[-1][1] == N_COEFFICIENTS
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_bfm_rotation_and_projection_follow_the_reference_camera():
    tensors = _tiny_bfm()
    tensors["keypoints"][0] = 7
    bfm = BFM09(tensors)
    r = bfm.rotation(torch.tensor([[0.1, -0.2, 0.3]]))[0]
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6)
    coefficients = torch.zeros(1, N_COEFFICIENTS)
    coefficients[0, slice(*COEFFICIENTS["trans"])] = torch.tensor([0.5, -0.25, 1.0])
    recon = bfm.reconstruct(coefficients)
    x, y, z = tensors["mean_shape"].reshape(-1, 3)[7] + torch.tensor([0.5, -0.25, 1.0])
    depth = 10.0 - z  # camera at distance 10 looking down -z
    assert torch.allclose(recon.vertices[0, 7], torch.stack([x, y, depth]))
    expected = torch.stack([1015.0 * x / depth + 112.0, 1015.0 * y / depth + 112.0])
    assert torch.allclose(recon.landmarks[0, 0], expected, atol=1e-4)


def test_keypoints_alone_equal_the_whole_reconstruction_at_the_keypoints():
    bfm = BFM09(_tiny_bfm())
    coefficients = torch.randn(3, N_COEFFICIENTS, generator=torch.Generator().manual_seed(0)) * 0.3
    recon = bfm.reconstruct(coefficients)
    vertices, landmarks = bfm.keypoints_in_camera(coefficients)
    assert torch.allclose(vertices, recon.vertices[:, bfm.keypoints], atol=1e-5)
    assert torch.allclose(landmarks, recon.landmarks, atol=1e-3)  # pixels of the 224 input


def test_sh_shading_of_ambient_light_is_constant():
    bfm = BFM09(_tiny_bfm())
    normals = torch.nn.functional.normalize(torch.randn(1, 10, 3), dim=-1)
    gamma = torch.zeros(1, 27)
    shading = bfm.sh_shading(normals, gamma)
    # Only the initial 0.8 DC term: a0·c0·0.8 for every vertex and channel.
    assert torch.allclose(shading, torch.full_like(shading, math.pi / math.sqrt(4 * math.pi) * 0.8))


# ---------------------------------------------------------------- payload layouts


def test_repeated_payload_round_trips_and_soft_combines_copies():
    layout = RepeatedPayload(PayloadCodec(embedding_dim=512), 512 * 32)
    secret = Secret.from_password("correct horse battery staple")
    embedding = np.random.default_rng(0).normal(size=512).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    encoded = layout.encode(embedding, secret, salt=bytes(8))
    logits = np.where(encoded.bits == 1, 4.0, -4.0)
    # Flip 10% of the slots at random: most bits keep a majority of correct copies, and the
    # error-correcting code repairs the rest.
    logits[np.random.default_rng(1).random(logits.size) < 0.1] *= -1
    decoded = layout.decode_logits(logits, secret)
    assert decoded.verified and np.dot(decoded.embedding, embedding) > 0.99


def test_reference_float_payload_is_the_raw_float32_bits_msb_first():
    layout = ReferenceFloatPayload(4)
    values = np.array([1.0, -2.5, 0.0, 3e-3], dtype=np.float32)
    bits = layout.encode(values).bits.reshape(4, 32)
    assert bits[0].tolist() == [0, 0] + [1] * 7 + [0] * 23  # 1.0 = 0x3F800000
    assert bits[1, 0] == 1  # sign
    decoded = layout.decode_bits(bits)
    assert np.allclose(decoded, [1.0, -2.5, 1e-8, 3e-3], rtol=1e-7)
    assert layout.decode_logits(np.where(bits.reshape(-1) == 1, 5.0, -5.0)).verified is False


# ---------------------------------------------------------------- full size (slow: ~0.8 GB written)


@pytest.fixture(scope="module")
def imported_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    files = official.write_synthetic_release(root / "release")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(hub.ENV_HOME, str(root / "home"))
        result = CliRunner().invoke(_cli(), ["weights", "import-official", str(root / "release")])
        assert result.exit_code == 0, result.output
        assert "licence" in result.output
        yield files, root


def _cli():
    from g2face.cli import cli

    return cli


@pytest.mark.slow
def test_importer_converts_all_five_files_and_registers_g2face_paper(imported_release):
    files, root = imported_release
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(hub.ENV_HOME, str(root / "home"))
        paths, manifest = hub.imported_files("g2face-paper")
        assert sorted(paths) == sorted(
            [
                "g2face.safetensors",
                "stylegan2.safetensors",
                "arcface.safetensors",
                "deep3d.safetensors",
                "bfm.safetensors",
            ]
        )
        assert set(manifest["sources"]) == set(official.OFFICIAL_FILES)
        # the user's files were read, not moved or copied into the cache
        assert all(p.is_file() for p in files.values())
        from g2face.models.zoo import load_model

        model = load_model("g2face-paper")
        crops = torch.rand(1, 3, 256, 256) * 2 - 1
        start = time.perf_counter()
        anonymized = model.anonymize(crops, Secret.from_password("correct horse battery staple"))
        seconds = time.perf_counter() - start
        print(f"\npaper-size anonymize forward, 1 face, CPU: {seconds:.2f} s")
        assert anonymized.images.shape == (1, 3, 256, 256) and torch.isfinite(anonymized.images).all()


@pytest.mark.slow
def test_a_mismatching_full_size_file_is_refused_naming_it(imported_release, tmp_path):
    files, _ = imported_release
    checkpoint = torch.load(files["deep3d"], weights_only=True)
    checkpoint["net_recon"]["final_layers.4.bias"] = torch.zeros(26)
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in files.values():
        (bad / path.name).symlink_to(path)
    (bad / "epoch_20.pth").unlink()
    torch.save(checkpoint, bad / "epoch_20.pth")
    result = CliRunner().invoke(_cli(), ["weights", "import-official", str(bad)])
    assert result.exit_code != 0
    assert (
        "epoch_20.pth [net_recon]: tensor final_layers.4.bias has shape [26], expected [27]" in result.output
    )
