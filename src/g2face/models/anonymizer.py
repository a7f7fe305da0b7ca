"""G2FaceModel: the G2Face network joined to its identity and geometry priors and the secure
payload codec — the object that turns aligned crops into anonymized crops and back.

    anonymize:  e_id = E_fr(X);  V = codec.encode(e_id, secret)      (encrypted, authenticated, ECC)
                z ~ N(0, I) seeded from (key, salt, face index);   Y = G(X, f_mlp(f_dummy(z), geo(X)), V)
    recover:    e_id' = codec.decode(E_p(Y), secret);             X̂ = G(Y, f_mlp(e_id', geo(Y)), 0)

A wrong secret decodes to an unrelated identity (and `verified=False`), so the face it renders is
another person, never the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from g2face.models.base import AnonymizedFaces, RecoveredFaces, encode_identities
from g2face.models.g2face import G2FaceNet
from g2face.payload import PayloadCodec, PayloadError, Secret
from g2face.priors.base import GeometryEncoder, IdentityEncoder


class G2FaceModel(nn.Module):
    """The learned path: DPIM fuses inside the generator and E_p reads the payload back."""

    payload_in_crops = True

    def __init__(
        self, net: G2FaceNet, identity: IdentityEncoder, geometry: GeometryEncoder, codec: PayloadCodec
    ):
        super().__init__()
        gie = net.config.gie
        if codec.n_bits != net.config.n_bits:
            raise ValueError(f"codec carries {codec.n_bits} bits but the network {net.config.n_bits}")
        if identity.embedding_dim != codec.embedding_dim or identity.embedding_dim != gie.identity_dim:
            raise ValueError(
                f"identity dims differ: encoder {identity.embedding_dim}, codec {codec.embedding_dim}, "
                f"network {gie.identity_dim}"
            )
        self.net, self.identity, self.geometry, self.codec = net, identity, geometry, codec

    @property
    def image_size(self) -> int:
        return self.net.image_size

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _dummy_z(self, seeds: list[int]) -> Tensor:
        dim = self.net.config.gie.z_dim
        rows = [torch.randn(dim, generator=torch.Generator().manual_seed(s % 2**63)) for s in seeds]
        return torch.stack(rows).to(self._device())

    def _render(self, crops: Tensor, identity: Tensor, bits: Tensor, noise_seed: int) -> Tensor:
        geometry = self.geometry(crops).as_vector()
        wplus = self.net.styles(identity, geometry)
        # The generator draws per-layer noise from the global RNG: fork it so results are
        # reproducible and the caller's RNG stream is left alone.
        with torch.random.fork_rng(devices=[crops.device] if crops.device.type == "cuda" else []):
            torch.manual_seed(noise_seed % 2**63)
            return self.net.synthesize(crops, wplus, bits).clamp(-1, 1)

    @torch.no_grad()
    def anonymize(
        self,
        crops: Tensor,
        secret: Secret,
        *,
        seeds: list[int] | None = None,
        salts: list[bytes] | None = None,
        face_offset: int = 0,
        search: bool = True,  # no candidates to choose among
        source_widths: Sequence[float | None] | None = None,  # nothing judged
        profiles: Sequence[bool] | None = None,  # renders every pose it is given
    ) -> AnonymizedFaces:
        """Aligned crops [B, 3, S, S] in [-1, 1] → anonymized crops carrying the payload.

        Each face gets a fresh random salt (one keystream per payload) unless `salts` are given;
        its dummy identity is seeded from (key, salt, face_offset + index) unless `seeds` are given.
        """
        embeddings = self.identity(crops).float().cpu().numpy()
        encoded, seeds = encode_identities(
            self.codec, embeddings, secret, seeds=seeds, salts=salts, face_offset=face_offset
        )
        bits = torch.from_numpy(np.stack([e.bits for e in encoded])).to(crops.device, crops.dtype)
        dummy = self.net.dummy_identity(self._dummy_z(seeds).to(crops.dtype))
        images = self._render(crops, dummy, bits, noise_seed=seeds[0])
        return AnonymizedFaces(images, bits, tuple(e.salt for e in encoded), tuple(seeds))

    @torch.no_grad()
    def render_identities(
        self,
        crops: Tensor,
        identities: Tensor,
        refine_steps: int = 0,
        source_widths: Sequence[float | None] | None = None,  # nothing judged
    ) -> tuple[Tensor, None]:
        """The learned network renders in one pass (`refine_steps` is ignored)."""
        no_payload = torch.zeros(
            crops.shape[0], self.net.config.n_bits, device=crops.device, dtype=crops.dtype
        )
        return self._render(crops, identities.to(crops), no_payload, noise_seed=0), None

    @torch.no_grad()
    def read_payload_logits(self, crops: Tensor) -> Tensor:
        return self.net.extract(crops)

    @torch.no_grad()
    def recover(self, crops: Tensor, secret: Secret) -> RecoveredFaces:
        """Anonymized crops → the original identities rendered back (where the secret is right)."""
        logits = self.read_payload_logits(crops).float().cpu().numpy()
        embeddings, verified, errors, corrected = [], [], [], []
        for row in logits:
            try:
                decoded = self.codec.decode_logits(row, secret)
            except PayloadError as e:
                decoded, error = None, e
            else:
                error = None
            if decoded is None:
                # Nothing to recover: render with a neutral identity so the batch stays aligned;
                # callers see `errors` and do not use this face.
                embeddings.append(np.zeros(self.codec.embedding_dim, dtype=np.float32))
                verified.append(False)
                corrected.append(None)
            else:
                embeddings.append(decoded.embedding.astype(np.float32))
                verified.append(decoded.verified)
                corrected.append(decoded.bit_errors_corrected)
            errors.append(error)
        identity = torch.from_numpy(np.stack(embeddings)).to(crops.device, crops.dtype)
        images, _ = self.render_identities(crops, identity)
        return RecoveredFaces(images, tuple(verified), tuple(errors), tuple(corrected), identity)
