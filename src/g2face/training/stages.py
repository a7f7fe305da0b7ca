"""The four training stages of DESIGN.md §6, each resumable and useful alone.

bank     render the generative prior and record (w, identity, geometry) of each sample
gie      regress f_mlp onto the bank; calibrate f_dummy to the identity encoder's statistics
payload  train the payload injections H and the extractor E_p through the distortion layer
e2e      encoder + IFF + injections + GIE + E_p + light generator fine-tuning, all losses, with D
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.func import functional_call
from tqdm.auto import tqdm

from g2face.losses.distortion import Distortion, quantize_8bit
from g2face.losses.terms import (
    anonymity_loss,
    discriminator_adversarial_loss,
    diversity_loss,
    generator_adversarial_loss,
    geometry_loss,
    identity_distance,
    payload_loss,
    r1_penalty,
    reconstruction_loss,
)
from g2face.models.discriminator import Discriminator
from g2face.training.engine import Stage, StageResult
from g2face.training.sources import broadcast_w, sample_w


def _bit_accuracy(logits: Tensor, bits: Tensor) -> float:
    return float(((logits > 0) == bits.bool()).float().mean())


def _random_bits(n: int, n_bits: int, device: torch.device) -> Tensor:
    """Uniform random payload bits. The codec's output (ciphertext + ECC parity under a secret key)
    is indistinguishable from these, and drawing them avoids a memory-hard KDF per training image."""
    return torch.randint(0, 2, (n, n_bits), device=device).float()


# Batch `index` of a bank with run seed `s` draws its latents with seed s * stride + index
# (scripts/device/bank.py draws the same on an accelerator).
BANK_SEED_STRIDE = 1_000_003


class BankStage(Stage):
    """No optimisation: `steps` samples, written in batch files `bank/batch_NNNNNN.safetensors`."""

    name = "bank"

    def setup(self) -> None:
        pass

    def run(
        self, steps: int | None = None, progress: bool = True, max_seconds: float | None = None
    ) -> StageResult:
        total = self.stage.steps if steps is None else steps
        batch = self.stage.batch_size
        n_batches = math.ceil(total / batch)
        mine = range(self.env.rank, n_batches, self.env.world_size)
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = [i for i in mine if not (self.folder / f"batch_{i:06d}.safetensors").is_file()]
        generator, started = self.priors.generator, time.perf_counter()
        done = 0
        for index in tqdm(todo, desc="bank", unit="batch", disable=not (progress and self.env.is_main)):
            n = min(batch, total - index * batch)
            with torch.no_grad(), self.autocast():
                w = sample_w(generator, n, self.config.seed * BANK_SEED_STRIDE + index)
                images = generator(broadcast_w(generator, w)).clamp(-1, 1)
                geometry = self.priors.geometry(images)
                record = {
                    "w": w,
                    "identity": self.priors.identity(images),
                    "shape": geometry.shape,
                    "expression": geometry.expression,
                    "pose": geometry.pose,
                }
            path = self.folder / f"batch_{index:06d}.safetensors"
            save_file({k: v.float().cpu().contiguous() for k, v in record.items()}, str(path) + ".tmp")
            Path(str(path) + ".tmp").replace(path)
            done += 1
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                break  # every finished batch is on disk; a later call renders the rest
        seconds = (time.perf_counter() - started) / max(1, done)
        return StageResult(self.name, self.folder, total, {"batches": float(done)}, seconds)


def load_bank(folder: Path, device: torch.device) -> dict[str, Tensor]:
    files = sorted(Path(folder).glob("batch_*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no bank in {folder}: run the bank stage first")
    parts = [load_file(str(f)) for f in files]
    return {k: torch.cat([p[k] for p in parts]).to(device) for k in parts[0]}


class GIEStage(Stage):
    """f_mlp(identity, shape ⊕ expression ⊕ pose) regresses the bank's W+ (mean squared error)."""

    name = "gie"

    def setup(self) -> None:
        self.bank = load_bank(self.run_dir / "bank", self.device)
        self.bank["geometry"] = torch.cat([self.bank["shape"], self.bank["expression"], self.bank["pose"]], 1)
        self.calibrate_dummy()
        # From scratch, f_mlp standardises its inputs with the bank's statistics and starts at the
        # bank's average latent (a resumed run overwrites both).
        self.net.style_mlp.standardize_inputs(torch.cat([self.bank["identity"], self.bank["geometry"]], 1))
        self.net.style_mlp.start_at(self.bank["w"].mean(0))
        self.add_optimizer([([self.net.style_mlp], 1.0)])
        # The last 5 % of the bank (or `gie_held_out` samples) is never trained on: `val_loss` tells
        # fitting from memorising.
        size = len(self.bank["w"])
        held_out = size // 20 if self.config.gie_held_out is None else self.config.gie_held_out
        if not 0 <= held_out < size:
            raise ValueError(f"gie_held_out={held_out} leaves nothing to train on in a bank of {size}")
        self.n_train = size - held_out

    def _regression_loss(self, net, pick: Tensor) -> Tensor:
        wplus = net.styles(self.bank["identity"][pick], self.bank["geometry"][pick])
        return F.mse_loss(wplus.float(), broadcast_w(net.generator, self.bank["w"][pick]))

    @torch.no_grad()
    def calibrate_dummy(self, batches: int = 8) -> None:
        """f_dummy's final BatchNorm: running statistics from its own outputs, affine set to the
        per-dimension mean/std of real identities, so dummies live where identities do."""
        norm = self.net.map_2_id.map_2_id[-1]
        norm.reset_running_stats()
        momentum, norm.momentum = norm.momentum, None  # cumulative average over the batches
        self.net.map_2_id.train()
        for _ in range(batches):
            self.net.map_2_id(torch.randn(256, self.model_config.gie.z_dim, device=self.device))
        norm.momentum = momentum
        norm.weight.copy_(self.bank["identity"].std(0))
        norm.bias.copy_(self.bank["identity"].mean(0))

    def train_step(self) -> dict[str, float]:
        total = 0.0
        accumulation = self.config.grad_accumulation
        for _ in range(accumulation):
            pick = torch.randint(self.n_train, (self.stage.batch_size,), device="cpu").to(self.device)
            with self.autocast():
                loss = self._regression_loss(self.net, pick)
            (loss / accumulation).backward()
            total += loss.item() / accumulation
        self.optimizer_step(self.optimizers[0])
        metrics = {"loss": total}
        if (self.step + 1) % self.config.log_every == 0 and self.n_train < len(self.bank["w"]):
            held_out = torch.arange(self.n_train, len(self.bank["w"]), device=self.device)
            with torch.no_grad(), self.autocast():
                metrics["val_loss"] = self._regression_loss(self.net, held_out).item()
        return metrics

    @torch.no_grad()
    def samples(self) -> list[Tensor]:
        """bank face G(w) | G(f_mlp(its identity, its geometry)) | G(f_mlp(a dummy, its geometry))."""
        net, generator = self.ema.module, self.priors.generator
        net.eval()
        n = min(4, len(self.bank["w"]))
        identity, geometry = self.bank["identity"][:n], self.bank["geometry"][:n]
        dummy = net.dummy_identity(
            torch.randn(n, self.model_config.gie.z_dim, generator=torch.Generator().manual_seed(0)).to(
                self.device
            )
        )
        columns = [
            generator(broadcast_w(generator, self.bank["w"][:n])),
            generator(net.styles(identity, geometry)),
            generator(net.styles(dummy, geometry)),
        ]
        net.train()
        return columns


class PayloadStage(Stage):
    """Payload injections + E_p: E_p must read the bits back after the distortion layer, while the
    image stays close to the same network's output without a payload (injection scales zeroed)."""

    name = "payload"

    def setup(self) -> None:
        self.distortion = Distortion(self.config.distortion).to(self.device)
        self.add_optimizer([([self.net.hiding_injects, self.net.hiding_extractor], 1.0)])

    def _inputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self.priors.identity(x), self.priors.geometry(x).as_vector()

    def _without_payload(self, net, x: Tensor, identity: Tensor, geometry: Tensor, bits: Tensor) -> Tensor:
        zeros = {
            f"hiding_injects.{i}.weight": torch.zeros_like(inject.weight)
            for i, inject in enumerate(net.hiding_injects)
        }
        with torch.no_grad():
            return functional_call(net, zeros, (x, identity, geometry, bits))

    def _same_noise(self):
        """RNG state to replay, so the reference and the payload pass draw identical generator noise."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    def train_step(self) -> dict[str, float]:
        w = self.config.losses
        accumulation = self.config.grad_accumulation
        sums = {"loss": 0.0, "payload": 0.0, "fidelity": 0.0, "bit_acc": 0.0}
        for x in self.micro_batches():
            identity, geometry = self._inputs(x)
            bits = _random_bits(len(x), self.model_config.n_bits, self.device)
            with self.autocast():
                with self._same_noise():
                    reference = self._without_payload(self.net, x, identity, geometry, bits)
                y = self.net(x, identity, geometry, bits)
                logits = self.net.extract(self.distortion(y))
                payload = payload_loss(logits.float(), bits)
                fidelity = reconstruction_loss(
                    y.float(), reference.float(), self.priors.perceptual, w.l1, w.perceptual
                )
                loss = w.payload * payload + fidelity
            (loss / accumulation).backward()
            for key, value in (("loss", loss), ("payload", payload), ("fidelity", fidelity)):
                sums[key] += value.item() / accumulation
            sums["bit_acc"] += _bit_accuracy(logits, bits) / accumulation
        self.optimizer_step(self.optimizers[0])
        return sums

    @torch.no_grad()
    def samples(self) -> list[Tensor]:
        """input | with payload | without payload | 10× amplified difference."""
        net = self.ema.module
        net.eval()
        x = self.faces.batch(0, min(4, self.stage.batch_size)).to(self.device)
        identity, geometry = self._inputs(x)
        bits = _random_bits(len(x), self.model_config.n_bits, self.device)
        with self._same_noise():
            reference = self._without_payload(net, x, identity, geometry, bits)
        y = net(x, identity, geometry, bits)
        net.train()
        return [x, y, reference, (10 * (y - reference)).clamp(-1, 1)]


class EndToEndStage(Stage):
    """All of G2Face's losses (DESIGN.md §1) on anonymization and recovery, plus the discriminator."""

    name = "e2e"

    def setup(self) -> None:
        self.distortion = Distortion(self.config.distortion).to(self.device)
        self.discriminator = Discriminator(self.model_config.discriminator).to(self.device)
        self.extra_modules["discriminator"] = self.discriminator
        new_parts = [m for name, m in self.net.named_children() if name != "generator"]
        groups = [(new_parts, 1.0)]
        if self.config.generator_finetune:
            groups.append(([self.net.generator], self.config.generator_lr_scale))
        self.add_optimizer(groups)
        self.add_optimizer([([self.discriminator], 1.0)])

    def anonymize_and_recover(
        self, net, x: Tensor, z: Tensor, bits: Tensor, identity: Tensor, geometry: Tensor
    ):
        dummy = net.dummy_identity(z)
        y = net.synthesize(x, net.styles(dummy, geometry), bits)
        geometry_y = self.priors.geometry(y)
        x_rec = net.synthesize(y, net.styles(identity, geometry_y.as_vector().detach()), bits)
        return dummy, y, geometry_y, x_rec

    def train_step(self) -> dict[str, float]:
        w, accumulation = self.config.losses, self.config.grad_accumulation
        g_opt, d_opt = self.optimizers
        sums: dict[str, float] = {}
        fakes, reals = [], []
        self.discriminator.requires_grad_(False)
        for x in self.micro_batches():
            with torch.no_grad():
                identity, geometry_x = self.priors.identity(x), self.priors.geometry(x)
            z = torch.randn(len(x), self.model_config.gie.z_dim, device=self.device)
            bits = _random_bits(len(x), self.model_config.n_bits, self.device)
            with self.autocast():
                dummy, y, geometry_y, x_rec = self.anonymize_and_recover(
                    self.net, x, z, bits, identity, geometry_x.as_vector()
                )
                id_y, id_rec = self.priors.identity(y), self.priors.identity(x_rec)
                fake_logits = self.discriminator(torch.cat([y, x_rec]))
                logits = self.net.extract(self.distortion(torch.cat([y, x_rec]))).float()
                terms = {
                    "diversity": w.diversity * diversity_loss(dummy.float()),
                    "anonymity": w.anonymity * anonymity_loss(identity, id_y.float()),
                    "dummy_identity": w.dummy_identity * identity_distance(dummy.float(), id_y.float()),
                    "recovery_identity": w.recovery_identity * identity_distance(identity, id_rec.float()),
                    "geometry": w.geometry
                    * (
                        geometry_loss(geometry_x, geometry_y, w.geometry_terms)
                        + geometry_loss(geometry_x, self.priors.geometry(x_rec), w.geometry_terms)
                    ),
                    "reconstruction": reconstruction_loss(
                        y.float(), x, self.priors.perceptual, w.l1, w.perceptual
                    )
                    + reconstruction_loss(x_rec.float(), x, self.priors.perceptual, w.l1, w.perceptual),
                    "adversarial": w.adversarial * generator_adversarial_loss(fake_logits.float()),
                    "payload": w.payload * payload_loss(logits, torch.cat([bits, bits])),
                }
                loss = sum(terms.values())
            (loss / accumulation).backward()
            stats = {**{k: v.item() for k, v in terms.items()}, "loss": loss.item()}
            stats["bit_acc"] = _bit_accuracy(logits, torch.cat([bits, bits]))
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value / accumulation
            fakes.append(torch.cat([y, x_rec]).detach())
            reals.append(x)
        self.optimizer_step(g_opt)

        self.discriminator.requires_grad_(True)
        regularise = w.r1_gamma > 0 and self.step % w.r1_every == 0
        for x, fake in zip(reals, fakes, strict=True):
            with self.autocast():
                d_loss = discriminator_adversarial_loss(
                    self.discriminator(x).float(), self.discriminator(fake).float()
                )
            (d_loss / accumulation).backward()
            sums["d_loss"] = sums.get("d_loss", 0.0) + d_loss.item() / accumulation
            if regularise:  # lazy R1 (StyleGAN2): every k steps, scaled by k; in float32
                real = x.detach().requires_grad_(True)
                r1 = r1_penalty(self.discriminator(real), real)
                (w.r1_gamma / 2 * r1 * w.r1_every / accumulation).backward()
                sums["r1"] = sums.get("r1", 0.0) + r1.item() / accumulation
        self.optimizer_step(d_opt)
        return sums

    @torch.no_grad()
    def samples(self) -> list[Tensor]:
        """original | anonymized | recovered (right password) | wrong password (a random identity)."""
        net = self.ema.module
        net.eval()
        x = self.faces.batch(0, min(4, self.stage.batch_size)).to(self.device)
        fixed = torch.Generator().manual_seed(self.config.seed)
        z = torch.randn(len(x), self.model_config.gie.z_dim, generator=fixed).to(self.device)
        bits = (
            torch.randint(0, 2, (len(x), self.model_config.n_bits), generator=fixed).float().to(self.device)
        )
        identity, geometry = self.priors.identity(x), self.priors.geometry(x).as_vector()
        _, y, geometry_y, x_rec = self.anonymize_and_recover(net, x, z, bits, identity, geometry)
        y = quantize_8bit(y)
        wrong = torch.randn(identity.shape, generator=fixed).to(self.device)
        x_wrong = net.synthesize(y, net.styles(wrong, geometry_y.as_vector()), bits)
        net.train()
        return [x, y, x_rec, x_wrong]


STAGE_CLASSES: dict[str, type[Stage]] = {
    s.name: s for s in (BankStage, GIEStage, PayloadStage, EndToEndStage)
}
