"""Evaluation settings (YAML + flags), the bench on fakes, and the click commands' argument errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from g2face.align import template_points
from g2face.cli.evaluate import bench as bench_command
from g2face.cli.evaluate import evaluate as eval_command
from g2face.evaluation import methods as mt
from g2face.evaluation.bench import bench, group_photo
from g2face.evaluation.settings import load_config, parse_methods
from g2face.types import FaceDetection


def test_parse_methods_names_and_options():
    methods = parse_methods(["none", {"blur": {"sigma_fraction": 0.3}}, "box"])
    assert [m.name for m in methods] == ["none", "blur", "box"] and methods[1].sigma_fraction == 0.3
    assert [m.name for m in parse_methods("pixelate, box")] == ["pixelate", "box"]
    with pytest.raises(KeyError):
        parse_methods("blur,nope")


def test_load_config_yaml_then_flags(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("data: /d\nout: /o\nlimit: 50\nmethods: [blur]\nprotocols: [lfw, celeba]\n")
    config, methods = load_config(path, limit=200, out=None)
    assert config.limit == 200 and str(config.out) == "/o" and config.protocols == ("lfw", "celeba")
    assert [m.name for m in methods] == ["blur"]
    config, methods = load_config(None, data="/d", out="/o")
    assert config.limit is None and [m.name for m in methods] == list(mt.BASELINES)
    with pytest.raises(ValueError, match="unknown evaluation settings: nonsense"):
        load_config(None, data="/d", out="/o", nonsense=1)
    with pytest.raises(ValueError, match="missing out"):
        load_config(None, data="/d")


class _OneFace:
    name = "one"

    def detect(self, image):
        points = template_points(256) + 100
        return [FaceDetection((100, 100, 356, 356), tuple(map(tuple, points)), 0.9)]


def test_bench_times_every_stage():
    photo = group_photo([np.full((50, 50, 3), 200, np.uint8)] * 3, size=(800, 600))
    assert photo.shape == (600, 800, 3) and (photo == 200).any()
    timings = bench([mt.GaussianBlur(), mt.SolidBox()], _OneFace(), photo, batches=(1, 2), repeats=1)
    stages = {(t.subject, t.stage.split(" (")[0], t.batch) for t in timings}
    assert {("pipeline", "detect", 1), ("blur", "anonymize", 2), ("box", "photo", 1)} <= stages
    assert all(t.ms_per_item >= 0 and t.peak_memory_mb > 0 for t in timings)


def test_bench_cli_times_only_the_batches_asked_for(tmp_path, monkeypatch):
    from g2face.detection import yunet

    monkeypatch.setattr(yunet, "YuNetDetector", lambda device: _OneFace())
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((600, 800, 3), 120, np.uint8))
    args = ["--photo", str(photo), "--methods", "box", "--repeats", "1", "--json", str(tmp_path / "t.json")]
    result = CliRunner().invoke(bench_command, [*args, "--batches", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "t.json").read_text())["timings"]
    assert {r["batch"] for r in rows if r["stage"] == "anonymize"} == {1}
    refused = CliRunner().invoke(bench_command, [*args, "--batches", "1,x"])
    assert refused.exit_code == 2 and "positive integers" in refused.output


def test_cli_reports_bad_arguments(tmp_path):
    runner = CliRunner()
    result = runner.invoke(eval_command, ["--methods", "blur,nope", "--data", ".", "--out", "x"])
    assert result.exit_code == 2 and "unknown method 'nope'" in result.output
    result = runner.invoke(eval_command, ["--methods", "blur"])
    assert result.exit_code == 2 and "missing data, out" in result.output
    result = runner.invoke(bench_command, ["--photo", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 2 and "no .jpg or .png portraits" in result.output


def test_bench_breaks_a_g2face_model_down_into_parts():
    import torch

    from g2face.evaluation.bench import g2face_parts
    from g2face.models.zoo import build_model, tiny_config

    model = build_model(tiny_config())
    x = torch.rand(1, 3, model.image_size, model.image_size) * 2 - 1
    parts = g2face_parts(model, x, torch.device("cpu"), repeats=1)
    assert {
        "identity encoder",
        "geometry encoder",
        "E_face",
        "payload encode (scrypt+cipher+ECC)",
    } <= set(parts)
    assert all(seconds > 0 for seconds in parts.values())


def test_bench_refuses_a_missing_model(tmp_path):
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(photo)
    result = CliRunner().invoke(
        bench_command, ["--photo", str(photo), "--model", str(tmp_path / "none.safetensors")]
    )
    assert result.exit_code == 2 and "--model" in result.output


def test_torch_flops_counts_matrix_products_and_the_peak_is_a_rate():
    import torch

    from g2face.evaluation.bench import fp32_peak, torch_flops

    a, b = torch.rand(4, 8), torch.rand(8, 3)
    assert torch_flops(lambda: a @ b) == 2 * 4 * 8 * 3
    assert torch_flops(lambda: a.sum()) == 0  # elementwise work is not counted
    assert fp32_peak(torch.device("cpu"), repeats=1) > 1e8  # any CPU does more than 0.1 GFLOP/s
