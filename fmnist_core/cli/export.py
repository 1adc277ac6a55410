"""`python -m fmnist_core export CKPT [--out FILE]`: a checkpoint as an ONNX file (export.py).

One JSON line on stdout: {"path", "bytes", "agreement", "max_logit_diff", "images",
"class_names"}. The file is written only after onnx.checker and ONNX Runtime on all 10,000 test
images agree with PyTorch; a bad checkpoint or --out prints one sentence and exits 2, nothing
written (cli.main's convention).
"""
from __future__ import annotations

from . import command, emit_json


def _export_args(p):
    p.add_argument("checkpoint", metavar="CKPT", help="a workbench checkpoint (.pt), e.g. artifacts/models/mlp.pt")
    p.add_argument("--out", metavar="FILE", help="the .onnx file to write (default: CKPT with .onnx)")


@command("export", "export a checkpoint as an ONNX file, checked with ONNX Runtime on the test set")
def cmd_export(args) -> int:
    from ..export import export_checkpoint
    emit_json(export_checkpoint(args.checkpoint, args.out))
    return 0
cmd_export.add_arguments = _export_args
