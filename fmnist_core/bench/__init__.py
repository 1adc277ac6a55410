"""The benchmark: how fast PyTorch, ONNX Runtime, the hand-written NumPy twin, the twin in torch ops
and the usual DataLoader loop run one model, per device, precision, work, batch size and CPU
thread count (`python -m fmnist_core bench`), each row with its label agreement with fp32 PyTorch.

  config.py    what a run covers: BenchConfig (why-comment per default), its quick/full presets
  model.py     the model under test: a checkpoint, a preset's architecture, the shipped default
  harness.py   timing primitives (warm up, sync, torch.utils.benchmark.Timer, probe), FLOP counts,
               matmul peak, BLAS, AMX, machine
  impls.py     the implementations, and everything that differs between them
  run.py       the run loop: the plan, one row per implementation x device x precision x work x
               batch x threads, agreement with fp32 PyTorch, the interleaved headline, the goals
  results.py   the results-file schema: validate, parse, load, merge, save, list; the text table
  events.py    progress as structured events (plan, step, row, saved, end): `bench --events FILE`
  job.py       the benchmark as a background job for the dashboard: start, stop, status (from events)
  speed.py     `bench-train`: training speed (MLP epoch in memory vs the DataLoader, CNN time-to-93%)

Left out: the command line (cli_bench.py, cli_speed.py), the dashboard's figures
(views/timings.py) and its chart styling (pages/timings.py), the ONNX exporter (export.py). Not
measured, on purpose: bf16 on CPUs without AMX or AVX512-BF16 (its rows say why), torch.compile, DataLoader
worker processes (impls.py says why).
"""
from .config import DEFAULT_PRESET, DEVICES, IMPLS, BenchConfig
from .job import job_status, start_job, stop_job
from .model import resolve_model
from .results import (ResultsFileError, fmt_s, format_table, load_results, merge_results, parse_results,
                      save_results, saved_results)
from .run import run_benchmark

__all__ = ["BenchConfig", "DEFAULT_PRESET", "DEVICES", "IMPLS", "ResultsFileError", "fmt_s",
           "format_table", "job_status", "load_results", "merge_results", "parse_results", "resolve_model",
           "run_benchmark", "save_results", "saved_results", "start_job", "stop_job"]
