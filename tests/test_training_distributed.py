"""Data parallelism through torchrun: a 2-process (gloo) run of the e2e stage, and both ranks end
with identical weights (each checkpoint records every rank's weight digest and refuses to save if
they differ)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import yaml

from g2face.training import checkpoint as ckpt


def test_two_process_torchrun_e2e(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not found next to the Python interpreter")
    config = {
        "stages": {"e2e": {"steps": 2, "batch_size": 2, "warmup_steps": 1}},
        "checkpoint_every": 1,
        "sample_every": 2,
        "log_every": 1,
        "device": "cpu",
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "g2face.cli.train"]
    cmd += [
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--stage",
        "e2e",
        "--run-dir",
        str(tmp_path / "run"),
        "--quiet",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        # Once in a full suite run here the two-process launch failed and never again in isolation:
        # one fresh attempt (new run folder), reporting the first failure, before the verdict.
        warnings.warn(f"torchrun attempt 1 failed, retrying:\n{done.stderr[-2000:]}", stacklevel=1)
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = ckpt.list_checkpoints(tmp_path / "run" / "e2e" / "checkpoints")
    assert [c.step for c in saved] == [1, 2]
    for c in saved:
        digests = ckpt.load_state(c.state)["rank_digests"]
        assert len(digests) == 2 and digests[0] == digests[1]
