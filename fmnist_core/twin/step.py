"""The step-through: one training step of the NumPy twin at a time, with every stage's numbers.

What it is. A `Stepper` holds a small model (an MLP or a small CNN of `models.layer_plan`,
built from twin.layers with the seed of its initialisation), its optimizer's state
(twin.optim: SGD, SGD with momentum, Adam) and where its batches come from (a seeded shuffle of
the training images, or one fixed batch such as a drawing with the label it was given).
`step()` runs one training step by hand — each layer's forward, softmax cross-entropy against
the one-hot labels, each layer's backward, the optimizer's update — and returns a `StepRecord`:
the activations, probabilities, loss, every gradient, the weights before and after, Adam's
moment estimates, the batch's loss and predictions after the update, and PyTorch's verdict:
`autograd_step` runs the same step with torch.autograd and torch.optim from the same weights and
optimizer state, and the record carries their largest differences. `reset()` goes back to the
same initialisation, batch order and empty optimizer state, so the steps replay bit for bit.
twin.conv_pixel opens one output pixel of a convolution of a record, forward and backward.

Bounded on purpose (`check_size`): a step must answer while a student waits and its state lives
in one browser session, so models have at most MAX_PARAMETERS parameters and a step at most
MAX_STEP_VALUES activation values (im2col columns included); a record keeps the first SHOW
images' activations, and the curves at most MAX_HISTORY rows.

Left out on purpose: dropout (its random masks would need replaying in torch: check_size refuses
it with that sentence), ResNets (too deep to read one step of), weight decay, schedules.

References: CNN Explainer (Wang et al. 2020) for the one-pixel convolution view; ConvNetJS
for per-layer activation and gradient statistics; CS231n's notes on the update-to-weight ratio
(about 1e-3 is healthy) and on dead ReLUs.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import IMAGE_SIZE, NUM_CLASSES
from ..errors import ConfigError
from ..models import ModelConfig, layer_plan, plan_parameters
from .layers import NumpyMLP, SoftmaxCrossEntropy
from .optim import SGD, Adam

MAX_PARAMETERS = 120_000    # mlp-seed000 (101,770), seed 001 and LeNet-5 (cnn-seed003) fit
MAX_STEP_VALUES = 6_000_000  # activations + im2col columns of one step: ~48 MB in float64
MAX_BATCH = 256
SHOW = 8                    # images of a batch whose every activation a record keeps
MAX_HISTORY = 1000          # curve rows kept; beyond, every second row is dropped
OPTIMIZERS = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam"}
WEIGHTED = ("linear", "conv")


def norm(a: np.ndarray) -> float:
    """The Euclidean (Frobenius) norm, without BLAS: np.linalg.norm's dot product ran on the
    BLAS thread pool, whose spinning second thread made it 10x slower on a busy 2-core machine."""
    return math.sqrt(float(np.square(a).sum()))


_controller = None


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread inside the block, as train_numpy does (twin.train._blas_threads: these
    matrices are too small to split, and on a busy 2-core machine two spinning threads made each
    product ~10x slower). The library scan threadpoolctl does first (~15 ms) is done once."""
    global _controller
    try:
        from threadpoolctl import ThreadpoolController  # comes with scikit-learn
    except ImportError:
        yield
        return
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


# --- what may be stepped ------------------------------------------------------------------

def step_values(config: ModelConfig) -> int:
    """Values one image makes in a training step: every layer's output, plus each conv's im2col
    columns (k*k*C per output pixel), the largest part of a CNN's step."""
    n, side, ch, cur = 0, IMAGE_SIZE, 1, IMAGE_SIZE * IMAGE_SIZE
    for s in layer_plan(config):
        a = s.args
        if s.kind == "conv":
            n += side * side * a["kernel"] ** 2 * ch
            ch = a["out"]
            cur = side * side * ch
        elif s.kind == "pool":
            side //= 2
            cur = side * side * ch
        elif s.kind == "linear":
            cur = a["out"]
        n += cur
    return n


def check_size(config: ModelConfig, batch_size: int) -> None:
    """Refuse, with the reason, a model or batch too big to step while a student waits."""
    if config.kind not in ("mlp", "cnn"):
        raise ConfigError("the step-through steps MLPs and plain CNNs; a ResNet is too deep to read one "
                          "step of: choose an MLP or a small CNN")
    if config.dropout:
        raise ConfigError("the step-through leaves dropout out (its random masks could not be replayed "
                          "by PyTorch): set dropout to 0")
    params = plan_parameters(config)
    if params > MAX_PARAMETERS:
        raise ConfigError(f"this model has {params:,} parameters; the step-through takes at most "
                          f"{MAX_PARAMETERS:,} so that a step answers at once: choose narrower layers")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ConfigError(f"the batch must hold 1 to {MAX_BATCH} images, not {batch_size}")
    if config.batchnorm and batch_size < 2:
        raise ConfigError("batchnorm normalizes over the batch: a batch of one image has no spread; "
                          "use 2 images or more, or a model without batchnorm")
    values = step_values(config) * batch_size
    if values > MAX_STEP_VALUES:
        fit = max(1, MAX_STEP_VALUES // step_values(config))
        raise ConfigError(f"one step of this model on {batch_size} images computes {values:,} values "
                          f"(at most {MAX_STEP_VALUES:,}): use a batch of at most {fit} images")


# --- one step's numbers ---------------------------------------------------------------------

@dataclass
class StepRecord:
    """Everything one step computed. Arrays of the batch keep its first SHOW images only; weights,
    gradients and optimizer state are whole. Maps are channels-last (N, H, W, C), as the twin's."""
    step: int                     # 1 for the first step after the initialisation
    indices: np.ndarray           # the batch's images: their numbers in the stepper's x
    images: np.ndarray            # (S, 28, 28) in [0, 1]
    labels: np.ndarray            # (N,) the whole batch's
    layers: list[dict]            # per layer: name, kind, args, out (S, ...), grad (S, ...) or None
    probs: np.ndarray             # (S, 10) softmax before the update
    dlogits: np.ndarray           # (S, 10) dLoss/dlogits = (probs - one-hot) / N
    loss: float                   # the batch's mean cross-entropy before the update
    loss_after: float             # ... and after it (same batch, same mode)
    probs_after: np.ndarray       # (S, 10)
    pred: np.ndarray              # (N,) predicted class before the update
    pred_after: np.ndarray        # (N,) and after it
    before: dict[str, np.ndarray]  # parameter name -> weights before the update
    after: dict[str, np.ndarray]  # ... and after it
    grads: dict[str, np.ndarray]  # parameter name -> dLoss/dparameter
    optimizer: dict[str, Any]     # kind, lr, momentum; Adam: t, step_size, m and v per parameter
    check: dict[str, float] = field(default_factory=dict)  # largest |twin - autograd| per stage

    def update(self, name: str) -> np.ndarray:
        return self.after[name] - self.before[name]

    def nbytes(self) -> int:
        """Bytes of the arrays the record holds: what it adds to a session."""
        return _nbytes([self.indices, self.images, self.labels, self.probs, self.dlogits, self.probs_after,
                        self.pred, self.pred_after, self.before, self.after, self.grads, self.optimizer,
                        [(d["out"], d["grad"]) for d in self.layers]])


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


class Stepper:
    """A small model, its optimizer and its batches, stepped by hand (see the module's docstring).

    x, y: the images (uint8 0..255 or floats in [0, 1], (M, 28, 28)) and labels batches come
    from: shared and never changed (the training set is not copied per student).
    same_batch: every step takes the first batch of the seeded shuffle (watch one batch being
    learned); otherwise step t takes batch t of an epoch-by-epoch reshuffle, as a training loop.
    """

    def __init__(self, config: ModelConfig, x: np.ndarray, y: np.ndarray, batch_size: int = 64, seed: int = 0,
                 optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, same_batch: bool = True,
                 dtype=np.float64):
        check_size(config, batch_size)
        if len(x) != len(y) or not len(y):
            raise ConfigError("the step-through needs images and as many labels")
        if batch_size > len(y):
            raise ConfigError(f"a batch of {batch_size} needs at least as many images; there are {len(y)}")
        if np.any((np.asarray(y) < 0) | (np.asarray(y) >= NUM_CLASSES)):
            raise ConfigError(f"labels must be class numbers 0..{NUM_CLASSES - 1}")
        self.config, self.x, self.y = config, x, np.asarray(y, np.int64)
        self.plan = layer_plan(config)
        self.batch_size, self.seed, self.same_batch, self.dtype = int(batch_size), int(seed), same_batch, dtype
        self.loss_fn = SoftmaxCrossEntropy()
        self._perm_epoch, self._perm = None, None
        self.set_optimizer(optimizer, lr, momentum)
        self.reset()

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """The same initialisation, batch order and an empty optimizer state: a bit-for-bit replay."""
        self.net = NumpyMLP(self.config, np.random.default_rng(self.seed), dtype=self.dtype)
        self.plist = self.net.parameters()
        self.names = [n for n, _, _ in self.plist]
        self.t = 0
        self.history: list[dict] = []
        self.stride = 1            # history keeps every stride-th step once thinned
        self._new_optimizer()

    def set_optimizer(self, kind: str, lr: float, momentum: float = 0.9) -> None:
        """Change optimizer or learning rate between steps. A new kind starts with an empty state
        (no momentum, Adam's t = 0); a new learning rate alone keeps the state."""
        if kind not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not (math.isfinite(lr) and 0 < lr <= 10):
            raise ConfigError(f"the learning rate must be above 0 and at most 10, not {lr}")
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), not {momentum}")
        same = getattr(self, "kind", None) == kind and (kind != "momentum" or self.momentum == momentum)
        self.kind, self.lr, self.momentum = kind, float(lr), float(momentum)
        if hasattr(self, "opt"):
            if same:
                self.opt.lr = self.lr
            else:
                self._new_optimizer()

    def _new_optimizer(self) -> None:
        self.opt = Adam(self.lr) if self.kind == "adam" else SGD(
            self.lr, self.momentum if self.kind == "momentum" else 0.0)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def batch(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step t's batch: (images (N, 28, 28) in [0, 1] as self.dtype, labels, indices)."""
        spe = self.steps_per_epoch()
        epoch, b = (0, 0) if self.same_batch else divmod(t, spe)
        if self._perm_epoch != epoch:  # one shuffle per epoch, seeded by (seed, epoch): replayable
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.y))
            self._perm_epoch = epoch
        idx = self._perm[b * self.batch_size:(b + 1) * self.batch_size]
        xb = self.x[idx]
        xb = xb.astype(self.dtype) / 255.0 if xb.dtype == np.uint8 else xb.astype(self.dtype)
        return xb, self.y[idx], idx

    def params(self) -> dict[str, np.ndarray]:
        return {n: layer.params[k] for n, layer, k in self.plist}

    def nbytes(self) -> int:
        """Bytes of the arrays a session keeps between steps: weights, batchnorm statistics, the
        optimizer's state and the batch order (the images are shared, not counted: never copied).
        The curves add at most MAX_HISTORY small rows."""
        o = self.opt
        state = [o.m, o.v] if isinstance(o, Adam) else [o.buf]
        weights = [layer.params for layer in self.net.layers]  # (state_dict() would copy them)
        stats = [(bn.running_mean, bn.running_var) for _, bn in self.net.batchnorms()]
        return _nbytes([weights, stats, state, self._perm])

    # -- stepping ------------------------------------------------------------------------

    def step(self, record: bool = True, check: bool = True) -> StepRecord | None:
        """One training step. record: keep every stage's numbers (a StepRecord); check: run the
        same step with torch.autograd beside it (record.check). Without either it only moves the
        weights and appends a row to the curves: what Run 100 does for all but its last step."""
        with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            return self._step(record, check)

    def run(self, steps: int) -> StepRecord | None:
        """`steps` steps; the last one recorded and checked against autograd."""
        if steps < 1:
            return None
        with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            for _ in range(int(steps) - 1):
                self._step(record=False, check=False)
            return self._step(record=True, check=True)

    def _step(self, record: bool, check: bool) -> StepRecord | None:
        # (called with one BLAS thread; a diverging learning rate, the exploding template,
        # overflows to inf/NaN: shown, not warned about)
        x, y, idx = self.batch(self.t)
        net = self.net
        before = {name: p.copy() for name, p in self.params().items()}
        if check:
            opt_state, buffers = self._optimizer_state(), self._buffers()
        acts, h = [], x
        for layer in net.layers:                     # forward, keeping every layer's output
            h = layer.forward(h, train=True)
            acts.append(h)
        loss = self.loss_fn.forward(h, y)
        probs = self.loss_fn.p
        dlogits = self.loss_fn.backward()             # (N, 10): (softmax - one-hot) / N
        net.backward(dlogits)                         # every layer's grads and out_grads
        grads = {name: layer.grads[k] for name, layer, k in self.plist}
        self.opt.step([layer.params[k] for _, layer, k in self.plist], [grads[nm] for nm in self.names])
        self.t += 1
        after = self.params()
        self._log(loss, acts, grads, before, after)
        if not (record or check):
            self._drop_caches()
            return None
        logits_after = self._peek(x)
        rec = StepRecord(
            step=self.t, indices=np.asarray(idx),
            images=x[:SHOW].copy(), labels=y.copy(),
            layers=[{"name": s.name, "kind": s.kind, "args": dict(s.args), "out": a[:SHOW].copy(),
                     "grad": (net.out_grads[s.name][:SHOW].copy() if s.name in net.out_grads else None)}
                    for s, a in zip(self.plan, acts)],
            probs=probs[:SHOW].copy(), dlogits=dlogits[:SHOW].copy(), loss=loss,
            loss_after=self.loss_fn.forward(logits_after, y), probs_after=self.loss_fn.p[:SHOW].copy(),
            pred=probs.argmax(1), pred_after=logits_after.argmax(1),
            before=before, after={k: v.copy() for k, v in after.items()},
            grads={k: v.copy() for k, v in grads.items()}, optimizer=self._optimizer_view())
        if check:
            rec.check = compare_with_autograd(self, x, y, before, buffers, opt_state, loss, acts[-1],
                                              dict(net.out_grads), grads, rec.after, tied_below(self.plan, acts))
        self._drop_caches()
        return rec

    def _peek(self, x: np.ndarray) -> np.ndarray:
        """Logits of x with the new weights, in training mode (batch statistics, as the step saw
        them), without moving batchnorm's running statistics."""
        saved = [(bn, bn.running_mean, bn.running_var, bn.num_batches_tracked) for _, bn in self.net.batchnorms()]
        out = self.net.forward(x, train=True)
        for bn, m, v, k in saved:
            bn.running_mean, bn.running_var, bn.num_batches_tracked = m, v, k
        return out

    def _drop_caches(self) -> None:
        # what each layer kept for its backward (inputs, im2col columns, masks) is the biggest part
        # of a step: dropped so a session between steps holds weights and optimizer state only
        for layer in self.net.layers:
            for attr in ("x", "cols", "mask", "xhat", "y", "win", "cdf"):
                layer.__dict__.pop(attr, None)
        self.net.out_grads = {}

    def _buffers(self) -> dict[str, np.ndarray]:
        """The state_dict entries that are not parameters: normalization, batchnorm statistics."""
        return {k: v for k, v in self.net.state_dict().items() if k not in self.names}

    def _optimizer_state(self) -> dict[str, Any]:
        o = self.opt
        if isinstance(o, Adam):
            return {"t": o.t, "m": {self.names[i]: a.copy() for i, a in o.m.items()},
                    "v": {self.names[i]: a.copy() for i, a in o.v.items()}}
        return {"buf": {self.names[i]: a.copy() for i, a in o.buf.items()}}

    def _optimizer_view(self) -> dict[str, Any]:
        o = self.opt
        view = {"kind": self.kind, "name": OPTIMIZERS[self.kind], "lr": self.lr,
                "momentum": self.momentum if self.kind == "momentum" else 0.0}
        if isinstance(o, Adam):
            view.update(t=o.t, step_size=o.lr / (1 - o.b1 ** o.t), b1=o.b1, b2=o.b2, eps=o.eps,
                        m={self.names[i]: a.copy() for i, a in o.m.items()},
                        v={self.names[i]: a.copy() for i, a in o.v.items()})
        elif o.momentum:
            view["buf"] = {self.names[i]: a.copy() for i, a in o.buf.items()}
        return view

    # -- the curves ----------------------------------------------------------------------

    def _log(self, loss, acts, grads, before, after) -> None:
        """One row of the per-layer curves: activation mean / std and dead-ReLU fraction per
        activation layer, gradient norm and update-to-weight ratio per weighted layer."""
        if (self.t - 1) % self.stride:
            return
        row: dict[str, Any] = {"step": self.t, "loss": float(loss), "layers": {}}
        for s, a in zip(self.plan, acts):
            if s.kind == "act":
                d = {"mean": float(a.mean()), "std": float(a.std())}
                if s.args["fn"] == "relu":  # a unit that is 0 for every image of the batch learns nothing
                    d["dead"] = float((a.reshape(len(a), -1) <= 0).all(0).mean())
                row["layers"][s.name] = d
            elif s.kind in WEIGHTED:
                w = f"{s.name}.weight"
                norm_w = norm(before[w])
                row["layers"][s.name] = {"grad_norm": norm(grads[w]),
                                         "update_ratio": norm(after[w] - before[w]) / norm_w if norm_w else math.nan}
        self.history.append(row)
        if len(self.history) > MAX_HISTORY:  # thin out: every second row, and log half as often
            self.history = self.history[::2]
            self.stride *= 2


# --- PyTorch's autograd beside the twin -------------------------------------------------------

def autograd_step(config: ModelConfig, x: np.ndarray, y: np.ndarray, params: dict, buffers: dict,
                  kind: str, lr: float, momentum: float, opt_state: dict) -> dict[str, Any]:
    """The same step in PyTorch, float64: the model from `params` and `buffers` (in training mode),
    F.cross_entropy, autograd, and torch.optim with the optimizer state the twin had.
    Returns loss, logits, each layer's output gradient (channels-last like the twin's), each
    parameter's gradient and its value after the update, as NumPy arrays."""
    from ..predict import one_thread_for_few
    with one_thread_for_few(1):  # one small batch: one torch thread (a busy CPU's pool only waits)
        return _autograd_step(config, x, y, params, buffers, kind, lr, momentum, opt_state)


def _autograd_step(config, x, y, params, buffers, kind, lr, momentum, opt_state):
    import torch
    import torch.nn.functional as F

    from ..models import build_model
    model = build_model(config).double().train()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in {**params, **buffers}.items()})
    named = dict(model.named_parameters())
    plist = [named[n] for n in params]
    if kind == "adam":
        opt = torch.optim.Adam(plist, lr=lr)
        if opt_state["t"]:
            for n, p in zip(params, plist):
                opt.state[p] = {"step": torch.tensor(float(opt_state["t"])),
                                "exp_avg": torch.from_numpy(opt_state["m"][n].copy()),
                                "exp_avg_sq": torch.from_numpy(opt_state["v"][n].copy())}
    else:
        opt = torch.optim.SGD(plist, lr=lr, momentum=momentum if kind == "momentum" else 0.0)
        for n, p in zip(params, plist):
            if n in opt_state["buf"]:
                opt.state[p] = {"momentum_buffer": torch.from_numpy(opt_state["buf"][n].copy())}
    h = torch.from_numpy(np.array(x, np.float64)).reshape(len(x), 1, IMAGE_SIZE, IMAGE_SIZE)
    outs = {}
    for name, module in model.named_children():  # nn.Sequential's forward, keeping every output
        h = module(h)
        if h.requires_grad:                      # from the first weighted layer on
            h.retain_grad()
            outs[name] = h
    loss = F.cross_entropy(h, torch.from_numpy(np.asarray(y, np.int64)))
    opt.zero_grad()
    loss.backward()
    act_grads = {}
    for name, t in outs.items():
        if t.grad is not None:
            g = t.grad.numpy()
            act_grads[name] = g.transpose(0, 2, 3, 1) if g.ndim == 4 else g  # (N, C, H, W) -> (N, H, W, C)
    grads = {n: p.grad.numpy().copy() for n, p in zip(params, plist)}
    opt.step()
    return {"loss": float(loss.detach()), "logits": h.detach().numpy(), "act_grads": act_grads, "grads": grads,
            "after": {n: p.detach().numpy().copy() for n, p in zip(params, plist)}}


def tied_below(plan, acts) -> set[str]:
    """Layers under a max pooling whose windows held a tie in this forward pass. Blank background
    gives equal values; which of them "wins" (and gets the gradient) is then decided by rounding
    in the last bit, differently in the twin's im2col and torch's convolution. The gradients of
    the layers below may then sit on another of the tied pixels, while the weights' gradients
    agree (equal values came from equal patches)."""
    names: set[str] = set()
    for j, s in enumerate(plan):
        if s.kind == "pool" and s.args["type"] == "max":
            x = acts[j - 1]
            hh, ww = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
            c = np.sort(np.stack([x[:, i:hh:2, k:ww:2] for i in (0, 1) for k in (0, 1)]), axis=0)
            if np.any((c[-1] > 0) & (c[-1] - c[-2] <= 1e-9 * np.abs(c[-1]))):
                names.update(p.name for p in plan[:j])
    return names


def compare_with_autograd(stepper: Stepper, x, y, before, buffers, opt_state, loss, logits, out_grads,
                          grads, after, tied: set[str] = frozenset()) -> dict[str, float]:
    """Largest |twin - autograd| per stage of the step (divided by the largest |value| where that
    is above 1): loss, logits, activation gradients, parameter gradients, updates, and "largest",
    the largest of them. Activation gradients of
    the layers under a tied max pooling (`tied_below`) are reported apart, as
    "activation_grads_under_ties", and left out of "largest"."""
    ref = autograd_step(stepper.config, x, y, before, buffers, stepper.kind, stepper.lr, stepper.momentum,
                        opt_state)

    def worst(pairs):
        # relative to the numbers' size once they exceed 1: float64 keeps ~16 digits, so logits of
        # 1e6 (a diverging learning rate) differ by ~1e-10 between two correct implementations
        return max((float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(1.0, np.abs(b).max()))
                    for a, b in pairs), default=0.0)

    out = {"loss": worst([(loss, ref["loss"])]), "logits": worst([(logits, ref["logits"])]),
           "activation_grads": worst((g, ref["act_grads"][n]) for n, g in out_grads.items()
                                     if n in ref["act_grads"] and n not in tied),
           "grads": worst((grads[n], ref["grads"][n]) for n in grads),
           "updates": worst((after[n] - before[n], ref["after"][n] - before[n]) for n in after)}
    out["largest"] = max(out.values())
    if tied:
        out["activation_grads_under_ties"] = worst((g, ref["act_grads"][n]) for n, g in out_grads.items()
                                                   if n in ref["act_grads"] and n in tied)
    return out


__all__ = ["MAX_BATCH", "MAX_PARAMETERS", "OPTIMIZERS", "SHOW", "StepRecord", "Stepper", "autograd_step",
           "check_size", "compare_with_autograd", "norm", "tied_below"]
