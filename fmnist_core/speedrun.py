"""The speedrun techniques that carry over from airbench (Keller Jordan, arXiv 2404.00498) to
28x28 grey images, as small functions the trainer and `bench-train` call:

    whitening_weights(x, k)   a k x k patch-whitening filter bank from the images' patch
                              covariance (eigenvectors / sqrt(eigenvalues + eps), and their
                              negatives); `init_whitening` puts it in a model's frozen
                              `whiten` conv (models.CNNConfig.whiten)
    alternate_flips(...)      "derandomized" flips: a random half of the images in epoch 1, then
                              each image flipped exactly in every other epoch
    WeightEMA                 an exponential moving average of the weights (and batchnorm
                              statistics), the model that is evaluated and kept
    tta_logits(model, x, n)   test-time augmentation: the mean logits over the image, its mirror
                              image (n >= 1) and both shifted by one pixel (n >= 2)

Left out: airbench's lookahead schedule (an EMA every step does the same work here), its
Nesterov SGD with decoupled per-layer scaling (AdamW + OneCycle is what every preset of this
project tunes), and progressive resizing. Label smoothing, the in-memory batches,
channels_last and bf16 autocast were already the trainer's (train.py, device.py).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .errors import ConfigError


def whitening_weights(x: torch.Tensor, k: int, eps: float = 5e-3) -> torch.Tensor:
    """(N, 1, H, W) normalized images -> conv weights (2*k*k, 1, k, k).

    The second-moment matrix C of every k x k patch (k*k x k*k) has eigenvectors V and
    eigenvalues L; filters V / sqrt(L + eps) make the patches' second moment ~ identity
    (L / (L + eps) on the diagonal), then the same filters negated, so a ReLU/GELU after the
    conv keeps both signs. eps keeps the near-zero directions (pixel noise) from being blown up.
    """
    patches = F.unfold(x.float(), k).transpose(1, 2).reshape(-1, k * k)  # (N*L, k*k), unpadded
    cov = patches.T @ patches / len(patches)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)  # the strongest direction first
    filters = (evecs / torch.sqrt(evals.clamp(min=0) + eps)).T.reshape(k * k, 1, k, k)
    return torch.cat([filters, -filters])


@torch.no_grad()
def init_whitening(model: torch.nn.Module, x: torch.Tensor, max_images: int = 10_000) -> None:
    """Set the model's `whiten` conv from images x (N, 1, 28, 28) in [0, 1] (the first
    `max_images`: the covariance of 81 numbers settles long before 60,000 images)."""
    conv = getattr(model, "whiten", None)
    if conv is None:
        raise ConfigError("this model has no whitening layer (CNNConfig.whiten = 0)")
    xs = model.norm(x[:max_images].to(conv.weight.device, torch.float32))
    conv.weight.copy_(whitening_weights(xs, conv.kernel_size[0]).to(conv.weight))
    conv.bias.zero_()


def alternate_flips(base: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to flip in `epoch` (1-based): base (N,) bool, one random draw per image
    for the whole run; epoch 1 flips `base`, epoch 2 the others, and so on. Over two epochs
    every image is seen once each way, which random flips only do on average."""
    return base if epoch % 2 else ~base


class WeightEMA:
    """An exponential moving average of a model's weights, updated after each step:
    ema = d * ema + (1 - d) * weights, with d = min(decay, (1 + t) / (10 + t)) at step t, so the
    first few hundred steps do not drag the random initial weights along. Buffers (batchnorm
    statistics) are copied, not averaged: the running statistics are an average of their own."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self._ema = [p for p in self.model.parameters()]
        self._src = [p for p in model.parameters()]
        self._ema_buf = list(self.model.buffers())
        self._src_buf = list(model.buffers())

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        torch._foreach_lerp_(self._ema, [p.detach() for p in self._src], 1.0 - d)
        for e, s in zip(self._ema_buf, self._src_buf):
            e.copy_(s)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(N, C, H, W) moved by (dy, dx) pixels, zeros (the black background) shifted in."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def tta_views(x: torch.Tensor, level: int) -> list[torch.Tensor]:
    """The inputs test-time augmentation averages over: level 0 the image alone, 1 + its mirror
    image, 2 + both moved one pixel down and right (airbench's level 2 uses the same shift)."""
    views = [x]
    if level >= 1:
        views.append(x.flip(-1))
    if level >= 2:
        views += [shift(v, 1, 1) for v in views[:2]]
    return views


def tta_logits(model: torch.nn.Module, x: torch.Tensor, level: int = 2, batch_size: int = 500,
               precision: str = "fp32") -> torch.Tensor:
    """The mean logits of `model` over tta_views(x, level): (N, 1, 28, 28) -> (N, 10), each view
    through evaluate.predict_logits (bf16 autocast where `precision` says, as training ran).
    Each view costs one forward pass: level 2 is 4x the evaluation of level 0."""
    from .evaluate import predict_logits
    views = tta_views(x, level)
    return torch.stack([predict_logits(model, v, batch_size, precision=precision) for v in views]).mean(0)
