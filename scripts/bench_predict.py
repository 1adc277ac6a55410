"""Speed and memory of one prediction, as figures (a benchmark, not a test: timings on a shared
2-core machine say more about the load than the code, so no test judges them).

    python scripts/bench_predict.py            # median ms of decode + preprocessing + forward
                                               # pass (goal: < 50 ms) and the preprocessing's
                                               # peak memory for a 36 MP RGBA PNG (MAX_PIXELS's
                                               # comment in preprocess.py says ~304 MB)

Moved here from tests/test_predict.py (`median < 0.050` s) and tests/test_preprocess.py (a
200-340 MB band) by issue 26. Prints JSON; exit 1 when the 50 ms goal is not met.
"""
from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fmnist_core.data import load  # noqa: E402
from fmnist_core.predict import predict_one  # noqa: E402

GOAL_S = 0.050


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def latency(rounds: int = 15) -> dict[str, float]:
    """Median seconds per prediction, after a warm-up, with a CNN the size of the shipped one
    (speed does not depend on the weights)."""
    import torch
    from fmnist_core.models import CNNConfig, build_model
    torch.manual_seed(0)
    model = build_model(CNNConfig(channels=(32, 64), kernel=3, fc=(128,), batchnorm=True, dropout=0.2)).eval()
    ds = load()
    canvas = Image.fromarray(255 - ds.x_test[3]).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA")
    photo = Image.fromarray(255 - ds.x_test[4]).resize((1000, 1000)).convert("RGB")
    files = {"canvas 280x280 PNG": _encode(canvas, "PNG"), "upload 1000x1000 JPEG": _encode(photo, "JPEG", quality=90)}
    out = {}
    for name, data in files.items():
        for _ in range(3):
            predict_one(model, data)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            predict_one(model, data)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    return out


def preprocess_peak_mb(side: int = 6000) -> float:
    """Peak resident memory (VmHWM, reset after the imports) of preprocessing a side x side
    RGBA PNG with every step kept, in a fresh process."""
    import tempfile
    a = np.full((side, side), 240, np.uint8)
    a[side // 4: 3 * side // 4, side // 3: 2 * side // 3] = 40
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        Image.fromarray(a).convert("RGBA").save(f, "PNG")
        f.flush()
        code = ("import re, sys; from fmnist_core.preprocess import preprocess; "
                "kb = lambda k: int(re.search(k + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
                "data = open(sys.argv[1], 'rb').read(); open('/proc/self/clear_refs', 'w').write('5'); "
                "b = kb('VmRSS'); preprocess(data, return_steps=True); print((kb('VmHWM') - b) / 1024)")
        p = subprocess.run([sys.executable, "-c", code, f.name], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(p.stdout)


if __name__ == "__main__":
    lat = latency()
    report = {"median_ms": {k: round(v * 1000, 1) for k, v in lat.items()}, "goal_ms": GOAL_S * 1000,
              "goal_met": all(v < GOAL_S for v in lat.values()),
              "preprocess_36mp_rgba_peak_mb": round(preprocess_peak_mb(), 1)}
    print(json.dumps(report))
    sys.exit(0 if report["goal_met"] else 1)
