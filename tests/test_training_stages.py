"""The training stages on the tiny configuration: gradients reach every trainable parameter, one
step lowers the loss, checkpoints round-trip, runs are seeded and resume exactly."""

from __future__ import annotations

import json

import pytest
import torch

from g2face.training import checkpoint as ckpt
from g2face.training.config import config_from_dict
from g2face.training.distributed import DistEnv
from g2face.training.stages import STAGE_CLASSES, load_bank

CPU = DistEnv(rank=0, world_size=1, device=torch.device("cpu"))
TRAINED = ("gie", "payload", "e2e")


def tiny_config(**extra):
    stages = {
        s: {"steps": 4, "batch_size": 4, "warmup_steps": 1, "decay_every": 10}
        for s in ("bank", "gie", "payload", "e2e")
    }
    return config_from_dict(
        {"stages": stages, "log_every": 1, "sample_every": 2, "checkpoint_every": 2, **extra}
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: thread start-up and oversubscription on a shared CPU cost more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def banked(one_thread, tmp_path_factory):
    """A run folder holding a bank (the gie stage needs one)."""
    run = tmp_path_factory.mktemp("run")
    STAGE_CLASSES["bank"](tiny_config(), CPU, run).run(steps=8, progress=False)
    return run


def _copy_bank(src, dst):
    (dst / "bank").mkdir(parents=True)
    for f in (src / "bank").iterdir():
        (dst / "bank" / f.name).write_bytes(f.read_bytes())


def make_stage(name, run, config=None):
    stage = STAGE_CLASSES[name](config or tiny_config(), CPU, run)
    stage.setup()
    stage.initialise()
    return stage


def test_bank_records_w_identity_geometry(banked):
    bank = load_bank(banked / "bank", torch.device("cpu"))
    assert bank["w"].shape == (8, 32) and bank["identity"].shape == (8, 16)
    assert bank["shape"].shape[1] + bank["expression"].shape[1] + 3 == 12
    assert not torch.equal(bank["w"][0], bank["w"][1])


@pytest.mark.parametrize("name", TRAINED)
def test_every_trainable_parameter_gets_a_gradient(name, banked, tmp_path):
    _copy_bank(banked, tmp_path)
    stage = make_stage(name, tmp_path)
    seen: dict[int, list[float]] = {}
    step = stage.optimizer_step

    def recording(optimizer):
        for group in optimizer.param_groups:
            for p in group["params"]:
                seen.setdefault(id(p), []).append(0.0 if p.grad is None else float(p.grad.abs().sum()))
        step(optimizer)

    stage.optimizer_step = recording
    stage.train_step()  # zero-initialised injection scales block their convs' gradient on step one
    stage.after_step()
    stage.step += 1
    stage.train_step()
    params = stage.trainable_parameters()
    assert params and len(seen) == len(params)
    names = {id(p): n for m in stage.modules().values() for n, p in m.named_parameters()}
    starved = [names.get(i, "?") for i, grads in seen.items() if grads[-1] == 0]
    assert not starved
    # and nothing outside the optimisers (the EMA copy included) is marked trainable
    marked = {id(p) for m in stage.modules().values() for p in m.parameters() if p.requires_grad}
    assert marked == {id(p) for p in params}


@pytest.mark.parametrize("name", TRAINED)
def test_one_step_lowers_the_loss_on_a_fixed_batch(name, banked, tmp_path):
    _copy_bank(banked, tmp_path)
    stage = make_stage(name, tmp_path)
    state = ckpt.rng_state()
    before = stage.train_step()["loss"]
    ckpt.set_rng_state(state)  # same batch, latents, bits, noise and distortion
    after = stage.train_step()["loss"]
    assert after < before


def _weights(stage):
    return {k: v.clone() for k, v in ckpt.module_weights(stage.modules()).items()}


def test_checkpoint_round_trip_gives_identical_outputs(banked, tmp_path):
    _copy_bank(banked, tmp_path)
    STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path).run(steps=2, progress=False)
    saved = ckpt.latest_checkpoint(tmp_path / "e2e" / "checkpoints")
    assert saved.step == 2 and saved.weights.suffix == ".safetensors"
    a, b = make_stage("e2e", tmp_path), make_stage("e2e", tmp_path)
    assert a.step == b.step == 2
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for stage in (a, b):
        stage.net.eval()
    with torch.no_grad():
        outs = []
        for stage in (a, b):
            torch.manual_seed(5)
            identity, geometry = torch.randn(2, 16), torch.randn(2, 12)
            outs.append(stage.ema.module(x, identity, geometry, torch.ones(2, 96)))
    assert torch.equal(outs[0], outs[1])
    json.dumps(ckpt.load_state(saved.state)["stage"])  # the state file loads with weights_only=True


def test_seeded_runs_are_identical(banked, tmp_path):
    runs = []
    for sub in ("a", "b"):
        _copy_bank(banked, tmp_path / sub)
        stage = STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / sub)
        stage.run(steps=2, progress=False)
        runs.append(_weights(stage))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_resume_continues_step_counter_and_rng(banked, tmp_path):
    for sub in ("straight", "killed"):
        _copy_bank(banked, tmp_path / sub)
    straight = STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / "straight")
    straight.run(steps=4, progress=False)
    STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / "killed").run(steps=2, progress=False)
    torch.manual_seed(1234)  # a new process: the RNG must come from the checkpoint
    resumed = STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / "killed")
    result = resumed.run(steps=4, progress=False)
    assert result.step == 4
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "killed" / "e2e" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4]
    assert sorted((tmp_path / "killed" / "e2e" / "samples").glob("e2e_grid_*.png"))


def test_a_time_budget_stops_checkpoints_and_a_later_call_continues(banked, tmp_path):
    _copy_bank(banked, tmp_path)
    first = STAGE_CLASSES["payload"](tiny_config(), CPU, tmp_path).run(progress=False, max_seconds=0)
    assert first.step == 1  # the step that ran past the budget is the last one
    assert ckpt.latest_checkpoint(tmp_path / "payload" / "checkpoints").step == 1
    assert list((tmp_path / "payload" / "samples").glob("payload_grid_0000001.png"))
    assert STAGE_CLASSES["payload"](tiny_config(), CPU, tmp_path).run(progress=False).step == 4


def test_bank_time_budget_keeps_finished_batches(tmp_path):
    config = tiny_config()
    result = STAGE_CLASSES["bank"](config, CPU, tmp_path).run(steps=12, progress=False, max_seconds=0)
    assert result.metrics["batches"] == 1 and len(list((tmp_path / "bank").glob("batch_*"))) == 1
    STAGE_CLASSES["bank"](config, CPU, tmp_path).run(steps=12, progress=False)
    assert len(load_bank(tmp_path / "bank", torch.device("cpu"))["w"]) == 12


def test_init_from_an_exported_model_starts_from_its_weights(banked, tmp_path):
    _copy_bank(banked, tmp_path / "a")
    STAGE_CLASSES["gie"](tiny_config(), CPU, tmp_path / "a").run(steps=2, progress=False)
    exported = tmp_path / "a" / "model.safetensors"
    stage = STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / "b")
    stage.init_from = exported
    stage.setup()
    stage.initialise()
    saved = STAGE_CLASSES["gie"](tiny_config(), CPU, tmp_path / "a")
    saved.setup()
    saved.initialise()
    mine, theirs = stage.net.state_dict(), saved.ema.module.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_init_from_a_different_configuration_is_refused(banked, tmp_path):
    import dataclasses

    from g2face.models.checkpoints import save_g2face
    from g2face.models.config import PRESETS
    from g2face.models.g2face import G2FaceNet
    from g2face.training.engine import IncompatibleWeightsError

    other = G2FaceNet(dataclasses.replace(PRESETS["tiny"], n_bits=64))
    save_g2face(other, tmp_path / "other.safetensors")
    stage = STAGE_CLASSES["e2e"](tiny_config(), CPU, tmp_path / "run")
    stage.init_from = tmp_path / "other.safetensors"
    stage.setup()
    with pytest.raises(IncompatibleWeightsError, match="differs"):
        stage.initialise()


def test_gie_starts_at_the_banks_average_latent(banked, tmp_path):
    _copy_bank(banked, tmp_path)
    stage = make_stage("gie", tmp_path)
    mean_w = stage.bank["w"].mean(0)
    with torch.no_grad():
        wplus = stage.net.styles(stage.bank["identity"], stage.bank["geometry"])
    spread = (stage.bank["w"] - mean_w).square().mean()
    # starting error ≈ the bank's own spread around its mean, not a random point of W
    assert (wplus - mean_w).square().mean() < 0.1 * spread
    # inputs standardised with the bank's statistics, so no part of e_g drowns the others
    inputs = torch.cat([stage.bank["identity"], stage.bank["geometry"]], 1)
    mlp = stage.net.style_mlp
    standardized = (inputs - mlp.input_mean) / mlp.input_std
    assert torch.allclose(standardized.mean(0), torch.zeros(inputs.shape[1]), atol=1e-4)
    assert torch.allclose(standardized.std(0), torch.ones(inputs.shape[1]), atol=1e-3)


def test_gie_holds_out_part_of_the_bank_and_logs_its_loss(tmp_path):
    STAGE_CLASSES["bank"](tiny_config(), CPU, tmp_path).run(steps=40, progress=False)
    stage = STAGE_CLASSES["gie"](tiny_config(), CPU, tmp_path)
    stage.run(steps=2, progress=False)
    assert stage.n_train == 38
    rows = [json.loads(line) for line in (tmp_path / "gie" / "metrics.jsonl").read_text().splitlines()]
    assert all("val_loss" in row and row["val_loss"] > 0 for row in rows)


def test_gie_holds_out_a_fixed_number_of_samples_when_asked(tmp_path):
    STAGE_CLASSES["bank"](tiny_config(), CPU, tmp_path).run(steps=40, progress=False)
    stage = STAGE_CLASSES["gie"](tiny_config(gie_held_out=12), CPU, tmp_path)
    stage.setup()
    assert stage.n_train == 28
    with pytest.raises(ValueError, match="nothing to train"):
        STAGE_CLASSES["gie"](tiny_config(gie_held_out=40), CPU, tmp_path).setup()


def test_ema_warms_up_so_short_runs_export_what_they_trained():
    from g2face.training.engine import warmup_ema

    update = warmup_ema(0.999)
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update(averaged, current, torch.tensor(1))
    assert torch.allclose(averaged[0], torch.full((3,), 1 - 2 / 11))  # decay (1 + 1) / (10 + 1)
    late = [torch.zeros(3)]
    update(late, current, torch.tensor(100_000))
    assert torch.allclose(late[0], torch.full((3,), 0.001))  # the configured decay once warmed up
