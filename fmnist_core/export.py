"""ONNX export: a checkpoint -> an `.onnx` file that ONNX Runtime (or any ONNX runtime) runs
without PyTorch or this package (`python -m fmnist_core export CKPT [--out FILE]`, the Results
page's "Download ONNX", and the ONNX Runtime rows of the benchmark).

The graph comes from torch.onnx.export's dynamo path (torch.export + onnxscript), with a dynamic
batch axis: input "images" (N, 1, 28, 28) float32 in [0, 1], output "logits" (N, 10). The older
TorchScript path also works for these models (same agreement, opset 17), but it is deprecated in
PyTorch 2.x; the dynamo path is generic over the layer plan (it traces the nn.Module as it is).
The model normalizes its own input, so the file takes raw pixels / 255, like `predict`.

metadata_props carry what a consumer needs to read the output: "class_names" (JSON list, index =
logit column), "model_config" (JSON), "input" (what the input is), "source" (the checkpoint).

Nothing is written before the file has passed: onnx.checker.check_model (full check) and ONNX
Runtime (CPU provider) on all 10,000 test images against the PyTorch model: label agreement
1.0 and max |logit difference| <= 1e-4. Files are written atomically (files.write_atomic).

Left out: timing the exported model (bench/impls.py's OnnxRuntimeImpl uses `onnx_bytes` and
`ort_session` from here: one exporter for both).
"""
from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .data import CLASSES, IMAGE_SIZE
from .errors import WorkbenchError
from .files import check_output_file, write_bytes_atomic
from .models import FashionNet, config_to_dict, load_model

MAX_LOGIT_DIFF = 1e-4   # the largest |ONNX Runtime - PyTorch| logit a written file may show
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(WorkbenchError):
    """A model that cannot be exported, or whose export does not compute what the model does."""


def onnx_bytes(model: FashionNet, source: str = "") -> bytes:
    """The model as a serialized ONNX ModelProto: dynamic batch axis, metadata set, float32."""
    import onnx
    model = model.to("cpu").float().eval()
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("batch")
    # the exporter reports its steps on stdout; the CLI's stdout is JSON lines only
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                        verbose=False)
        except Exception as exc:  # an exporter failure: one sentence, not its multi-page report
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ExportError(f"torch.onnx.export could not export this model "
                              f"({type(exc).__name__}: {first})") from None
    proto = program.model_proto
    cfg = getattr(model, "config", None)
    meta = {"class_names": json.dumps(list(CLASSES)),
            "model_config": json.dumps(config_to_dict(cfg) if cfg is not None else None),
            "input": f"{INPUT_NAME}: float32 (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), pixels / 255; "
                     f"the model normalizes them itself",
            "source": source}
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name = "fmnist-workbench"
    return proto.SerializeToString()


def metadata(data: bytes) -> dict[str, str]:
    """An ONNX file's metadata_props as a dict."""
    import onnx
    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}


def ort_session(data: bytes, threads: int | None = None, provider: str = "CPUExecutionProvider"):
    """An ONNX Runtime session over the serialized model; `threads` = intra-op threads."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no per-session warnings on stderr
    return ort.InferenceSession(data, sess_options=opts, providers=[provider])


def verify(data: bytes, model: FashionNet, x: np.ndarray) -> dict:
    """onnx.checker, then ONNX Runtime vs the PyTorch model on `x` (float32 N x 1 x 28 x 28):
    {"agreement", "max_logit_diff", "images"}; ExportError when either check fails."""
    import onnx
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph fails onnx.checker ({str(exc).splitlines()[0][:200]})") from None
    got = ort_session(data).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with torch.inference_mode():
        want = model.to("cpu").float().eval()(torch.from_numpy(x)).numpy()
    report = {"agreement": float((got.argmax(1) == want.argmax(1)).mean()),
              "max_logit_diff": float(np.abs(got - want).max()), "images": len(x)}
    if report["agreement"] < 1.0 or report["max_logit_diff"] > MAX_LOGIT_DIFF:
        raise ExportError(f"ONNX Runtime disagrees with PyTorch on the test images (label agreement "
                          f"{report['agreement']:.4f}, max logit difference {report['max_logit_diff']:.2g}; "
                          f"needs 1.0 and <= {MAX_LOGIT_DIFF:g}): nothing written")
    return report


def test_input(data=None) -> np.ndarray:
    """All 10,000 test images as the exported model's input."""
    from .data import load
    from .evaluate import images_to_tensor
    ds = data if data is not None else load()
    return np.ascontiguousarray(images_to_tensor(ds.x_test).numpy(), dtype=np.float32)


def export_checkpoint_bytes(checkpoint: str | Path, data=None) -> tuple[bytes, dict]:
    """A checkpoint -> (verified ONNX bytes, the verification report). CheckpointError for a bad
    checkpoint, ExportError for an export that does not pass."""
    model = load_model(checkpoint)
    blob = onnx_bytes(model, source=Path(checkpoint).name)
    return blob, verify(blob, model, test_input(data))


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, data=None) -> dict:
    """Export, verify, then write `out` (default: the checkpoint's path with .onnx) atomically.
    Returns {"path", "bytes", "agreement", "max_logit_diff", "images", "class_names"}."""
    target = check_output_file(out if out is not None else Path(checkpoint).with_suffix(".onnx"),
                               ".onnx", "--out")
    if Path(checkpoint).resolve() == target.resolve():
        raise WorkbenchError(f"--out {target}: that is the checkpoint itself")
    blob, report = export_checkpoint_bytes(checkpoint, data)
    write_bytes_atomic(target, blob)
    return {"path": str(target), "bytes": len(blob), **report,
            "class_names": json.loads(metadata(blob)["class_names"])}
