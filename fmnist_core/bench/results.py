"""Benchmark results files: the schema, validate / parse / load, merge several, save, list the
saved ones, and the readable table.

A results file is the dict run.run_benchmark returns, as JSON: {"schema", "label", "created",
"machine" (CPU, cores, GPU, torch/numpy versions, BLAS, date), "model", "settings", "peak",
"rows", "headline", "seconds"}. Every file carries its machine block, so a file produced on a
GPU box can be loaded (`load_results`, validated) and shown beside local figures
(`merge_results`), each row labelled with where it came from. Files are written with the one
atomic writer (files.py): a reader never sees half a file.

Left out: measuring (run.py) and anything the dashboard draws (views/timings.py). `fmt_s` is the
benchmark's time formatter, for the CLI's table (sub-millisecond figures); the dashboard's
durations are the views' format_seconds.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any

from ..data import ARTIFACTS
from ..errors import WorkbenchError
from ..files import write_bytes_atomic
from .config import DEVICES, IMPLS, PRECISIONS, WORKS

SCHEMA = "fmnist-workbench/bench/1"
BENCH_DIR = ARTIFACTS / "benchmarks"
ROW_KEYS = ("impl", "device", "work", "batch_size", "threads", "median_s", "min_s", "max_s",
            "gflops", "peak_share", "available")
# newer rows also carry "precision" (default fp32), "agreement" (label agreement with fp32 PyTorch
# on the test images, 0..1) and "max_logit_diff"; files written before them still load


class ResultsFileError(WorkbenchError):
    """A benchmark results file that cannot be read or does not follow the schema."""


def results_dir(folder: str | Path | None = None) -> Path:
    """The folder of saved results: `folder`, else artifacts/benchmarks/ (read at call time)."""
    return Path(folder) if folder else BENCH_DIR


def default_label(machine: dict) -> str:
    """Where figures came from, in words: 'Intel Xeon, 2 cores' or '... + NVIDIA H100'."""
    label = f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cores')} cores"
    if machine.get("gpu"):
        label += f" + {machine['gpu']}"
    return label


# --- saving, loading and merging results files ----------------------------------------------

def save_results(results: dict, out: str | Path | None = None, bench_dir: str | Path | None = None,
                 timestamped: bool = True) -> list[Path]:
    """A timestamped file under bench_dir (default artifacts/benchmarks/), plus `out` if given."""
    paths = []
    if timestamped:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        paths.append(results_dir(bench_dir) / f"bench-{stamp}-{os.getpid()}.json")
    if out:
        paths.append(Path(out))
    text = json.dumps(results, indent=1)
    for p in paths:
        write_bytes_atomic(p, text)
    return paths


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_results(obj: Any, origin: str = "results") -> dict:
    """Raise ResultsFileError naming the first thing wrong; return obj when it follows the schema."""
    def bad(msg: str):
        raise ResultsFileError(f"{origin}: {msg}")

    if not isinstance(obj, dict):
        bad(f"expected a JSON object at the top, got {type(obj).__name__}")
    if obj.get("schema") != SCHEMA:
        bad(f"not a workbench benchmark file (schema {obj.get('schema')!r}, expected {SCHEMA!r})")
    for key, typ in (("machine", dict), ("rows", list), ("peak", list)):
        if not isinstance(obj.get(key), typ):
            bad(f"'{key}' is missing or not a {'list' if typ is list else 'JSON object'}")
    m = obj["machine"]
    for key in ("cpu", "cores", "torch", "numpy", "date"):
        if key not in m:
            bad(f"the machine block lacks '{key}'")
    for i, p in enumerate(obj["peak"]):
        if not isinstance(p, dict) or p.get("device") not in DEVICES or not _is_num(p.get("gflops")):
            bad(f"peak entry {i} needs a device ({', '.join(DEVICES)}) and a number 'gflops'")
    h = obj.get("headline")
    if h is not None and not (isinstance(h, dict) and isinstance(h.get("median_s"), dict)
                              and all(_is_num(v) for v in h["median_s"].values())):
        bad("'headline' must be null or hold a 'median_s' object of numbers")
    if not obj["rows"]:
        bad("has no rows")
    for i, r in enumerate(obj["rows"]):
        if not isinstance(r, dict):
            bad(f"row {i} is not a JSON object")
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            bad(f"row {i} lacks {', '.join(missing)}")
        if r["impl"] not in IMPLS:
            bad(f"row {i}: unknown impl {r['impl']!r} (expected one of {', '.join(IMPLS)})")
        if r["device"] not in DEVICES:
            bad(f"row {i}: unknown device {r['device']!r} (expected one of {', '.join(DEVICES)})")
        if r["work"] not in WORKS:
            bad(f"row {i}: unknown work {r['work']!r} (expected one of {', '.join(WORKS)})")
        if not isinstance(r["batch_size"], int) or isinstance(r["batch_size"], bool) or r["batch_size"] < 1:
            bad(f"row {i}: batch_size must be a positive integer, got {r['batch_size']!r}")
        if not isinstance(r["available"], bool):
            bad(f"row {i}: 'available' must be true or false, got {r['available']!r}")
        if not r["available"] and not isinstance(r.get("reason"), str):
            bad(f"row {i} is unavailable but gives no reason")
        for k in ("median_s", "min_s", "max_s", "gflops", "peak_share"):
            if r[k] is not None and not (_is_num(r[k]) and r[k] >= 0):
                bad(f"row {i}: '{k}' must be a non-negative number or null, got {r[k]!r}")
        if r["median_s"] is not None and not r["min_s"] <= r["median_s"] <= r["max_s"]:
            bad(f"row {i}: expected min_s <= median_s <= max_s")
        if r["available"] and r["median_s"] is None and not isinstance(r.get("reason"), str):
            bad(f"row {i} has no timing and gives no reason")
        if r.get("precision", "fp32") not in PRECISIONS:
            bad(f"row {i}: unknown precision {r['precision']!r} (expected one of {', '.join(PRECISIONS)})")
        for k, top in (("agreement", 1.0), ("max_logit_diff", math.inf)):
            v = r.get(k)
            if v is not None and not (_is_num(v) and 0 <= v <= top):
                bad(f"row {i}: '{k}' must be a number from 0 to {top:g} or null, got {v!r}")
    return obj


MAX_DEPTH = 32  # a results file nests 5 deep; Python's json parser recurses once per level


def _nesting(text: str, limit: int) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), counted without
    parsing, stopping at `limit`: 100,000 '[' would exhaust the parser's recursion instead."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_results(data: str | bytes | dict, origin: str = "uploaded file") -> dict:
    """A results file's text (an upload's bytes, say) -> the validated results dict."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ResultsFileError(f"{origin}: not a text file (expected the JSON that "
                                   f"`python -m fmnist_core bench` writes)") from None
    if isinstance(data, str):
        if _nesting(data, MAX_DEPTH) > MAX_DEPTH:
            raise ResultsFileError(f"{origin}: nests lists or objects more than {MAX_DEPTH} deep, so it is not "
                                   "a benchmark results file (those nest 5 deep)")
        try:
            data = json.loads(data)
        except RecursionError:  # deep nesting the count above missed: refused all the same
            raise ResultsFileError(f"{origin}: nests too deep to be a benchmark results file") from None
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno})") from None
    results = validate_results(data, origin)
    results.setdefault("label", default_label(results["machine"]))
    results["origin"] = origin
    return results


def load_results(path: str | Path) -> dict:
    """Read and validate a results file from this machine or another one."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"results file not found: {path}")
    return parse_results(path.read_bytes(), origin=path.name)


def saved_results(bench_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Results files in the folder: reference-*.json (committed) first, then newest first.
    Each: {"path", "name", "reference", "results" (validated) or None, "error"}."""
    folder = results_dir(bench_dir)
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: (not p.name.startswith("reference"), -p.stat().st_mtime))
    out = []
    for p in files:
        entry = {"path": str(p), "name": p.name, "reference": p.name.startswith("reference"),
                 "results": None, "error": None}
        try:
            entry["results"] = load_results(p)
        except (ResultsFileError, OSError) as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def merge_results(results: list[dict]) -> list[dict]:
    """Rows of several results files as one list, each row labelled with where it came from:
    `source` (the machine's label), `hardware` (the CPU or GPU that computed it), `origin`
    (file name) and `created`. The same run given twice appears once."""
    seen, out = set(), []
    for res in results:
        key = (res.get("label"), res.get("created"))
        if key in seen:
            continue
        seen.add(key)
        m = res["machine"]
        for r in res["rows"]:
            hardware = m.get("gpu") if r["device"] == "cuda" else (
                "Apple GPU (MPS)" if r["device"] == "mps" else m.get("cpu"))
            out.append({**r, "source": res.get("label") or default_label(m),
                        "hardware": hardware or r["device"], "origin": res.get("origin", "this run"),
                        "created": res.get("created")})
    return out


# --- a table for people ---------------------------------------------------------------------

def fmt_s(s: float | None) -> str:
    """Seconds for the table: '850 us', '1.25 ms', '120 ms', '2.04 s'; '-' for none."""
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"
    return f"{s:.2f} s"


def format_table(rows: list[dict], by_source: bool = False) -> str:
    """Readable text: timed rows, then one line per implementation x device that cannot run.
    by_source: rows from merge_results, each line ending with the machine it came from."""
    head = (f"{'impl':<13}{'device':<7}{'prec':<5}{'work':<11}{'batch':>6}{'thr':>4}{'median':>11}"
            f"{'min..max':>22}{'GFLOP/s':>9}{'peak':>6}{'transfer':>10}{'agree':>8}{'max|dlogit|':>12}")
    if by_source:
        head += "  source"
    lines = [head, "-" * len(head)]
    missing: dict[tuple, str] = {}
    for r in rows:
        src = f"  {r.get('source', '')}" if by_source else ""
        prec = r.get("precision", "fp32")
        if not r["available"]:
            missing.setdefault((r["impl"], r["device"], prec, src), r.get("reason", ""))
            continue
        key = (f"{r['impl']:<13}{r['device']:<7}{prec:<5}{r['work']:<11}{r['batch_size']:>6}"
               f"{r['threads'] or '':>4}")
        if r["median_s"] is None:
            lines.append(f"{key}  {r.get('reason', '')}{src}")
            continue
        share = f"{r['peak_share']:.0%}" if r["peak_share"] is not None else "-"
        span = f"{fmt_s(r['min_s'])}..{fmt_s(r['max_s'])}"
        agree = f"{r['agreement']:.2%}" if r.get("agreement") is not None else "-"
        diff = f"{r['max_logit_diff']:.1e}" if r.get("max_logit_diff") is not None else "-"
        lines.append(f"{key}{fmt_s(r['median_s']):>11}{span:>22}{r['gflops']:>9.1f}{share:>6}"
                     f"{fmt_s(r.get('transfer_s')):>10}{agree:>8}{diff:>12}{src}")
    for (impl, dev, prec, src), reason in missing.items():
        lines.append(f"{impl:<13}{dev:<7}{prec:<5}not run: {reason}{src}")
    return "\n".join(lines)
