"""CLI: `python -m fmnist_core bench-train [--quick] [--skip-cnn] [--out FILE]` (see bench/speed.py)."""
from __future__ import annotations

import sys

from . import command, emit_json


def _args(p):
    p.add_argument("--quick", action="store_true", help="one MLP epoch, a fifth of the DataLoader epoch")
    p.add_argument("--skip-cnn", action="store_true", help="only the MLP figures")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--cnn-threads", type=int, default=0,
                   help="torch threads for the CNN's time-to-93%% (0: torch's default; on a busy 2-core "
                        "machine 1 is often faster)")


@command("bench-train", "training speed: MLP in-memory vs DataLoader, CNN time-to-93%")
def cmd_bench_train(args) -> int:
    from ..bench.speed import bench_train
    from ..data import load
    from ..errors import ConfigError
    from ..files import check_output_file, write_json_atomic
    if args.out:
        check_output_file(args.out, ".json", "--out")
    if args.cnn_threads < 0:
        raise ConfigError(f"--cnn-threads must be >= 0, got {args.cnn_threads}")
    res = bench_train(load(), quick=args.quick, skip_cnn=args.skip_cnn, cnn_threads=args.cnn_threads,
                      progress=lambda s: print(s, file=sys.stderr, flush=True))
    m = res["mlp_seed001"]
    lines = ["", "MLP seed-001 (784-128-64-10, Adam, batch 32), seconds per epoch:"]
    lines += [f"  {k:28s} {v}" for k, v in m.items() if not k.endswith("_all_s")]
    if "cnn" in res:
        c = res["cnn"]
        lines += [f"CNN {c['preset']} ({c['precision']}): {c['epochs']} epochs in {c['train_seconds']} s, "
                  f"final test accuracy {c['final_test_accuracy']}, "
                  f"93% reached after {c['time_to_target_s']} s (epoch {c['epoch_reached']})"]
    print("\n".join(lines), file=sys.stderr)
    if args.out:
        write_json_atomic(args.out, res)
    emit_json(res)
    return 0
cmd_bench_train.add_arguments = _args
