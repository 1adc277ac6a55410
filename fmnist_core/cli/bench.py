"""`python -m fmnist_core bench`: the timing harness (fmnist_core/bench/) from the command line.

JSON results on stdout (rows + machine + peak + where they were saved), a readable table and
progress on stderr; every run is saved under artifacts/benchmarks/ with a timestamp, and also
to --out; `--events FILE` also writes the progress as JSON lines (bench/events.py) for the
process that started this one. `--show FILE...` reads saved results files (this machine's or
another's, a GPU box's) and prints them as one table, each row labelled with where it came from.
"""
from __future__ import annotations

import sys

from . import command, emit_json
from ..files import check_output_file


def _bench_args(p):
    from ..bench import DEVICES, IMPLS
    from ..bench.config import PRECISIONS
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: fewer repeats, no epochs, no DataLoader pass over a whole split")
    p.add_argument("--out", help="also write the results JSON here")
    p.add_argument("--events", metavar="FILE",
                   help="also write progress as JSON lines to FILE (.jsonl): plan, step, row, saved, end")
    p.add_argument("--model", metavar="CHECKPOINT",
                   help="time this checkpoint (default: artifacts/models/mlp.pt if present, "
                        "else mlp-seed000 with random weights)")
    p.add_argument("--preset", help="time this preset's architecture with random weights")
    p.add_argument("--device", action="append", choices=DEVICES,
                   help="only these devices (repeatable; default: cpu, cuda, mps, the missing "
                        "ones reported with their reason)")
    p.add_argument("--impl", action="append", choices=IMPLS, help="only these implementations (repeatable)")
    p.add_argument("--precision", action="append", choices=PRECISIONS,
                   help="only these precisions (repeatable; default: fp32, bf16, fp16, the ones "
                        "this hardware lacks reported with their reason)")
    p.add_argument("--no-epoch", action="store_true", help="skip the one-epoch rows")
    p.add_argument("--no-fold", action="store_true",
                   help="time the PyTorch MLP exactly as saved, its Normalize layer included "
                        "(default: folded into fc1 for inference, as the manual twin does)")
    p.add_argument("--label", help="name this machine in the results (default: CPU model, cores, GPU)")
    p.add_argument("--save-dir", help="folder for the timestamped results file (default artifacts/benchmarks)")
    p.add_argument("--queue", action="store_true", help="take every slot of the local training queue first "
                   "(waits for the trainings running now; new ones wait for the benchmark)")
    p.add_argument("--no-save", action="store_true", help="do not write the timestamped file")
    p.add_argument("--show", nargs="+", metavar="FILE",
                   help="print saved results files as one table instead of measuring")


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


@command("bench", "time inference and training: implementation x device x work x batch size")
def cmd_bench(args) -> int:
    from dataclasses import replace

    from .. import bench
    from ..errors import WorkbenchError
    if args.show:
        results = [bench.load_results(f) for f in args.show]
        rows = bench.merge_results(results)
        for r in results:
            _say(f"{r['origin']}: {r['label']} ({r['created']}), model {r.get('model', {}).get('name')}")
        _say(bench.format_table(rows, by_source=True))
        emit_json({"rows": rows, "sources": [{"origin": r["origin"], "label": r["label"],
                                              "created": r["created"], "machine": r["machine"]}
                                             for r in results]})
        return 0
    if args.model and args.preset:
        raise WorkbenchError("give --model CHECKPOINT or --preset NAME, not both")
    from ..bench.events import event_stream
    from ..data import load
    if args.out:
        check_output_file(args.out, ".json", "--out")
    if args.events:
        check_output_file(args.events, ".jsonl", "--events")
    cfg = bench.BenchConfig.quick() if args.quick else bench.BenchConfig.full()
    if args.device:
        cfg = replace(cfg, devices=tuple(dict.fromkeys(args.device)))
    if args.impl:
        cfg = replace(cfg, impls=tuple(dict.fromkeys(args.impl)))
    if args.precision:
        cfg = replace(cfg, precisions=tuple(dict.fromkeys(args.precision)))
    if args.no_epoch:
        cfg = replace(cfg, epochs=False)
    if args.no_fold:
        cfg = replace(cfg, fold_normalization=False)
    import contextlib
    from ..queue import exclusive
    with event_stream(args.events, _say) as report:  # stderr: each event's message
        bm = bench.resolve_model(args.model, args.preset)
        queue = (exclusive(say=lambda m: report({"event": "step", "message": m})) if args.queue
                 else contextlib.nullcontext())
        with queue:
            results = bench.run_benchmark(bm, load(), cfg, progress=report, label=args.label)
        saved = bench.save_results(results, out=args.out, bench_dir=args.save_dir,
                                   timestamped=not args.no_save)
        report({"event": "saved", "paths": [str(p) for p in saved]})
    _say(bench.format_table(results["rows"]))
    for p in results["peak"]:
        _say(f"fp32 matmul peak on {p['device']}" + (f" ({p['threads']} threads)" if p["threads"] else "")
             + f": {p['gflops']:.0f} GFLOP/s ({p['size']}x{p['size']}, median of {p['repeats']})")
    h = results.get("headline")
    if h:
        parts = [f"{k} {bench.fmt_s(v)} ({h['ratio_to_pytorch'].get(k, 0):.2g}x pytorch)"
                 for k, v in h["median_s"].items()]
        _say(f"headline, 10,000 test images on the CPU ({h['threads']} threads, {h['rounds']} "
             f"interleaved rounds): " + ", ".join(parts))
    for g in (results.get("goals") or {}).values():
        mark = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        _say(f"goal ({mark}): {g['goal']}: {g['note']}")
    blas, m = results["machine"]["blas"], results["machine"]
    nb = blas.get("numpy") or {}
    _say(f"numpy BLAS: {nb.get('internal_api', '?')} {nb.get('version', '')} "
         f"({nb.get('architecture', '?')} kernels, {nb.get('num_threads', '?')} threads)"
         + (f", {m['numpy_matmul_gflops']:.0f} GFLOP/s on the same matmul" if m.get("numpy_matmul_gflops") else "")
         + f"; torch BLAS: {blas.get('torch')} ({blas.get('torch_cpu_capability')})"
         + (f"; env {blas['env']}" if blas.get("env") else ""))
    la = m.get("load_average") or {}
    if la.get("before"):
        _say(f"load average before / after: {la['before'][0]:.1f} / {la['after'][0]:.1f} "
             f"on {m['cores']} cores (other jobs make timings noisy; compare figures within one run)")
    _say(f"{len(results['rows'])} rows in {results['seconds']:.1f} s" +
         (f"; saved to {', '.join(map(str, saved))}" if saved else ""))
    emit_json({**results, "saved": [str(p) for p in saved]})
    return 0
cmd_bench.add_arguments = _bench_args
