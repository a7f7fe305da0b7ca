"""`g2face bench priors`: one real prior timed in its own process; bad names refused."""

from __future__ import annotations

import json

from click.testing import CliRunner

from g2face.cli import cli


def test_bench_priors_times_forward_and_backward(tmp_path):
    out = tmp_path / "priors.json"
    result = CliRunner().invoke(
        cli, ["bench", "priors", "--only", "sface", "--repeats", "1", "--threads", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [1, 8]
    for r in rows:
        assert (
            r["prior"] == "sface" and r["forward_ms"] > 0 and r["forward_backward_ms"] > r["forward_ms"] / 2
        )
        assert r["peak_rss_mb"] > 0 and 9 < r["parameters_m"] < 11


def test_every_prior_runs_at_batch_one(tmp_path):
    out = tmp_path / "priors.json"
    args = ["bench", "priors", "--batches", "1", "--repeats", "1", "--threads", "1", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {r["prior"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"mobilestylegan-256", "sface", "facenet-casia", "mediapipe-geometry", "lpips_hed"}
    assert rows["facenet-casia"]["forward_backward_ms"] is None  # evaluation only: never differentiated
    assert all(r["forward_ms"] > 0 for r in rows.values())


def test_bench_priors_refuses_unknown_names():
    result = CliRunner().invoke(cli, ["bench", "priors", "--only", "stylegan9"])
    assert result.exit_code == 2 and "unknown prior" in result.output


def test_bench_needs_a_photo_without_subcommand():
    result = CliRunner().invoke(cli, ["bench"])
    assert result.exit_code == 2 and "--photo is required" in result.output
