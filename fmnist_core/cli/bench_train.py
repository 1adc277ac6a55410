"""CLI: `python -m fmnist_core bench-train [--quick] [--skip-cnn] [--out FILE]` (see bench/speed.py);
`--speedrun PRESET`: that preset's time to 93/94/95% with and without test-time augmentation and the
DataLoader epoch of the same run; `--mlp-steps`: where the seed-001 MLP's step goes (bench/mlp_step.py)."""
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
    p.add_argument("--speedrun", metavar="PRESET",
                   help="instead: a preset's time to 93/94/95%% (test accuracy plain and with test-time "
                        "augmentation, wall and CPU seconds) and the DataLoader epoch of the same run")
    p.add_argument("--threads", type=int, default=1, help="torch threads for --speedrun (default 1)")
    p.add_argument("--mlp-steps", action="store_true",
                   help="instead: the seed-001 MLP epoch step by step (fused / foreach / for-loop Adam, "
                        "by hand, matmuls only) and a torch.profiler breakdown, one thread")


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
    progress = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.speedrun or args.mlp_steps:
        return _special(args, load(), progress, write_json_atomic)
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


def _special(args, data, progress, write_json_atomic) -> int:
    from ..errors import ConfigError
    from ..models import preset
    if args.speedrun and args.mlp_steps:
        raise ConfigError("choose one of --speedrun and --mlp-steps")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.speedrun:
        from ..bench.speed import bench_speedrun
        preset(args.speedrun)  # an unknown name: the sentence that lists the presets, before any work
        res = bench_speedrun(data, args.speedrun, threads=args.threads, quick=args.quick, progress=progress)
        lines = [f"DataLoader epoch (seed-001 MLP, {args.threads} thread(s)): {res['dataloader_epoch_s']} s wall, "
                 f"{res['dataloader_epoch_cpu_s']} s CPU"]
        for target, got in res["speedrun"]["time_to"].items():
            for how in ("plain", "tta"):
                g = got[how]
                lines.append(f"{args.speedrun} to {target} ({how}): " + (
                    "not reached" if g is None else f"epoch {g['epoch']}, {g['wall_s']} s wall, {g['cpu_s']} s CPU "
                    f"({g['dataloader_epochs']} DataLoader epochs wall, {g['dataloader_epochs_cpu']} CPU)"))
    else:
        from ..bench.mlp_step import mlp_step_breakdown
        res = mlp_step_breakdown(data, progress=progress)
        lines = [f"seed-001 MLP epoch ({res['steps_per_epoch']} steps, 1 thread): DataLoader loop "
                 f"{res['dataloader']['wall_s']} s wall, {res['dataloader']['cpu_s']} s CPU"]
        lines += [f"  {k:18s} {v['wall_s']:7.3f} s wall {v['cpu_s']:7.3f} s CPU  x{v['speedup_cpu']} (CPU)"
                  for k, v in res["epochs"].items()]
        lines += ["profile of the trainer's step (self CPU time):"]
        lines += [f"  {r['share']:6.1%}  {r['what']}" for r in res["profile"]]
    print("\n".join(lines), file=sys.stderr)
    if args.out:
        write_json_atomic(args.out, res)
    emit_json(res)
    return 0
