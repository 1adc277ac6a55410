"""What the Timings page shows, computed: benchmark results as tables, chart rows, machine
blocks and one-line explanations of why the figures differ.

The benchmark itself is fmnist_core.bench (its background job: bench/job.py; results files,
saved and uploaded: bench/results.py); this module only reads what it produced.

Left out: anything that measures (fmnist_core.bench) and any chart styling (pages/timings.py).
`_t` writes the sub-millisecond figures of the sentences (µs, ms with one decimal); durations
for people are the views' format_seconds, the CLI's table is bench.results.fmt_s.
"""
from __future__ import annotations

from typing import Any

from .format import plural

IMPL_NAMES = {"pytorch": "PyTorch nn.Module", "onnxruntime": "ONNX Runtime", "manual-numpy": "manual NumPy twin",
              "manual-torch": "manual, torch ops", "dataloader": "DataLoader + PIL"}
# for chart axes: two short lines each, so a narrow chart needs no slanted, cut-off labels
IMPL_CHART = {"pytorch": "PyTorch<br>nn.Module", "onnxruntime": "ONNX<br>Runtime",
              "manual-numpy": "manual<br>NumPy twin", "manual-torch": "manual<br>torch ops",
              "dataloader": "DataLoader<br>+ PIL"}


def impl_name(impl: str, precision: str = "fp32", chart: bool = False) -> str:
    """'PyTorch nn.Module', 'PyTorch nn.Module bf16'; impl may be a headline key ('pytorch bf16')."""
    impl, _, prec = impl.partition(" ")
    prec = prec or precision
    name = (IMPL_CHART if chart else IMPL_NAMES).get(impl, impl)
    return name if prec == "fp32" else f"{name}{'<br>' if chart else ' '}{prec}"
WORK_NAMES = {"inference": "inference", "latency": "one image (latency)",
              "train_step": "training step", "epoch": "one epoch"}


# --- results as tables and chart rows -------------------------------------------------------

def source_title(results: dict[str, Any]) -> str:
    """'Intel Xeon Processor, 2 cores · 11-22 00:24' — a results file, short enough for a legend."""
    label = str(results.get("label") or "?")
    for mark in ("(R)", "(TM)", "(tm)", " CPU @", " CPU"):
        label = label.replace(mark, "")
    created = str(results.get("created") or "")[5:16].replace("T", " ")
    return " · ".join(p for p in (" ".join(label.split()), created) if p)


def is_quick(results: dict[str, Any]) -> bool:
    """A quick run: no epochs, no DataLoader pass over a whole split."""
    return (results.get("settings") or {}).get("epochs") is False


def chip_title(results: dict[str, Any], reference: bool = False, new: bool = False) -> str:
    """'★ reference 11-22 00:24 · mlp-seed000' / 'new 05-14 05:10 · mlp-seed000, quick': short
    enough to read whole in a multiselect chip (the machine is on the cards below)."""
    created = str(results.get("created") or "")[5:16].replace("T", " ")
    model = (results.get("model") or {}).get("name") or "?"
    tag = "★ reference " if reference else "new · " if new else ""
    return f"{tag}{created} · {model}" + (", quick" if is_quick(results) else "")


def file_title(results: dict[str, Any]) -> str:
    """source_title plus what was timed: '... · mlp-seed000, quick' (for pickers)."""
    model = (results.get("model") or {}).get("name")
    return source_title(results) + f" · {model or '?'}" + (", quick" if is_quick(results) else "")


def with_sources(results_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every results dict a distinct, readable `label` (two files from the same machine
    would otherwise share one), on copies: the inputs stay as they are."""
    out, seen = [], {}
    for res in results_list:
        title = source_title(res)
        seen[title] = seen.get(title, 0) + 1
        if seen[title] > 1:
            title += f" ({seen[title]})"
        out.append({**res, "label": title})
    return out


def machine_block(results: dict[str, Any]) -> dict[str, Any]:
    """The machine a results file came from, in short lines for a card."""
    m = results["machine"]
    blas = m.get("blas") or {}
    nb = blas.get("numpy") or {}
    peaks = []
    for p in results.get("peak") or []:
        where = p["device"] + (f", {p['threads']} thread{'s' if p['threads'] != 1 else ''}"
                               if p.get("threads") else "")
        peaks.append(f"{where}: {p['gflops']:.0f} GFLOP/s")
    model = results.get("model") or {}
    la = m.get("load_average") or {}
    load = None
    if la.get("before") and la.get("after"):
        # the 1-minute load average: above the core count, other work competed for the CPU
        load = f"{la['before'][0]:.1f} before, {la['after'][0]:.1f} after ({plural(m.get('cores') or 0, 'core')})"
    return {"label": results.get("label"), "origin": results.get("origin", "this machine"),
            "load": load,
            "cpu": f"{m.get('cpu')} ({plural(m.get('cores') or 0, 'core')})", "gpu": m.get("gpu") or "none",
            "software": f"PyTorch {m.get('torch')}, NumPy {m.get('numpy')}, Python {m.get('python', '?')}",
            "blas": f"NumPy: {nb.get('internal_api', '?')} {nb.get('version', '')}".strip()
                    + f" · PyTorch: {blas.get('torch', '?')}",
            "date": str(m.get("date", ""))[:19].replace("T", " "),
            "model": f"{model.get('name', '?')} ({model.get('parameters', 0):,} parameters), "
                     + ("quick run" if is_quick(results) else "full run"),
            "peaks": peaks,
            "devices": {d: why for d, why in (m.get("devices") or {}).items() if why}}


def _ms(s: float | None) -> float | None:
    return None if s is None else s * 1000.0


def timing_table(rows: list[dict[str, Any]]):
    """merge_results rows -> a table for people: timed rows only, times in milliseconds."""
    import pandas as pd
    recs = []
    for r in rows:
        if not r["available"] or r["median_s"] is None:
            continue
        recs.append({"source": r.get("source", ""), "implementation": IMPL_NAMES.get(r["impl"], r["impl"]),
                     "precision": r.get("precision", "fp32"),
                     "device": r["device"], "work": WORK_NAMES.get(r["work"], r["work"]),
                     "batch": r["batch_size"], "threads": r.get("threads"),
                     "median (ms)": _ms(r["median_s"]), "min (ms)": _ms(r["min_s"]),
                     "max (ms)": _ms(r["max_s"]), "GFLOP/s": r.get("gflops"),
                     "share of peak": r.get("peak_share"), "transfer (ms)": _ms(r.get("transfer_s")),
                     "label agreement": r.get("agreement"), "max |logit diff|": r.get("max_logit_diff"),
                     "note": r.get("note") or ""})
    return pd.DataFrame(recs, columns=["source", "implementation", "precision", "device", "work", "batch",
                                       "threads", "median (ms)", "min (ms)", "max (ms)", "GFLOP/s",
                                       "share of peak", "transfer (ms)", "label agreement",
                                       "max |logit diff|", "note"])


def agreement_rows(rows: list[dict[str, Any]]):
    """Does each row compute what fp32 PyTorch computes? One line per source x implementation x
    device x precision: label agreement on the test images and the largest |logit difference|."""
    import pandas as pd
    recs, seen = [], set()
    for r in rows:
        key = (r.get("source", ""), r["impl"], r["device"], r.get("precision", "fp32"))
        if r.get("agreement") is None or key in seen:
            continue
        seen.add(key)
        recs.append({"source": key[0], "implementation": impl_name(r["impl"], key[3]), "device": r["device"],
                     "label agreement": r["agreement"], "max |logit diff|": r.get("max_logit_diff"),
                     "images": r.get("agreement_images")})
    return pd.DataFrame(recs, columns=["source", "implementation", "device", "label agreement",
                                       "max |logit diff|", "images"])


GOAL_MARKS = {True: "met", False: "not met", None: "not measured"}


def goal_lines(results_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's speed goals as each results file measured them (files from before the goals
    have none): source, goal, status ('met', 'not met', 'not measured'), met, note. For the
    teacher's view (and the README): students see comparison_lines instead."""
    return [{"source": res.get("label"), "goal": g["goal"], "status": GOAL_MARKS[g.get("met")],
             "met": g.get("met"), "note": speed_words((g.get("note") or "").removeprefix("not measured: "))}
            for res in results_list for g in (res.get("goals") or {}).values()]


def comparison_lines(results_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the goals measured, as plain comparisons with no goal and no verdict (source, note):
    the figures a student reads; rows that were not measured are left out."""
    return [{"source": g["source"], "note": g["note"]} for g in goal_lines(results_list) if g["met"] is not None]


def speed_words(text: str) -> str:
    """'0.68x faster' written the way it reads: '1.5x slower' (results files store the ratio)."""
    import re

    def fix(m: "re.Match[str]") -> str:
        r = float(m.group(1))
        return m.group(0) if r >= 1 or r <= 0 else f"{1 / r:.1f}× slower"
    return re.sub(r"(\d+(?:\.\d+)?)\s*[x×] faster", fix, text)


def skipped(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What could not run, once per source x device x reason (implementations joined)."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        if r["available"] and r["median_s"] is not None:
            continue
        reason = r.get("reason") or "not measured"
        key = (r.get("source", ""), r["device"], reason)
        name = impl_name(r["impl"], r.get("precision", "fp32"))
        if r["available"]:  # a row skipped for time: name its work too
            name += f" ({WORK_NAMES.get(r['work'], r['work'])}, batch {r['batch_size']})"
        groups.setdefault(key, [])
        if name not in groups[key]:
            groups[key].append(name)
    return [{"source": s, "device": d, "reason": why, "what": ", ".join(names)}
            for (s, d, why), names in groups.items()]


def work_options(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """work -> the batch sizes that have at least one timed row, in bench order."""
    out: dict[str, list[int]] = {}
    for w in WORK_NAMES:
        sizes = sorted({r["batch_size"] for r in rows if r["work"] == w and r["median_s"] is not None})
        if sizes:
            out[w] = sizes
    return out


def _max_threads(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if r["device"] == "cpu" and r.get("threads"):
            out[r["source"]] = max(out.get(r["source"], 0), r["threads"])
    return out


def chart_rows(rows: list[dict[str, Any]], work: str, batch: int, one_thread: bool = False):
    """The timed rows of one work x batch size, one per source x device x implementation;
    CPU rows with all of that machine's threads (or one thread). Columns for a grouped bar
    chart with min..max error bars: implementation, series ('cpu · source'), median_ms,
    plus, minus, gflops, peak_share, device, source, threads."""
    import pandas as pd
    recs = []
    for r in _drawn(rows, work, batch, one_thread):
        med = r["median_s"] * 1000
        dev = r["device"] + (f", {r['threads']} thr" if r["device"] == "cpu" else "")
        recs.append({"implementation": impl_name(r["impl"], r.get("precision", "fp32"), chart=True),
                     "series": f"{dev} · {r['source']}", "median_ms": med,
                     "plus": r["max_s"] * 1000 - med, "minus": med - r["min_s"] * 1000,
                     "gflops": r.get("gflops"), "peak_share": r.get("peak_share"),
                     "device": r["device"], "source": r["source"], "threads": r.get("threads")})
    return pd.DataFrame(recs, columns=["implementation", "series", "median_ms", "plus", "minus", "gflops",
                                       "peak_share", "device", "source", "threads"])


def headline_rows(results_list: list[dict[str, Any]]):
    """The interleaved 10,000-image CPU inference of each source: source, implementation, ms."""
    import pandas as pd
    recs = []
    for res in results_list:
        h = res.get("headline") or {}
        for impl, s in (h.get("median_s") or {}).items():
            recs.append({"source": res.get("label"), "implementation": impl_name(impl, chart=True),
                         "median_ms": s * 1000, "threads": h.get("threads")})
    return pd.DataFrame(recs, columns=["source", "implementation", "median_ms", "threads"])


def wants_log_axis(values) -> bool:
    """A log scale when the positive values span more than 20x (a DataLoader row next to a
    matrix product would flatten everything else)."""
    v = [float(x) for x in values if x is not None and x > 0]
    return bool(v) and max(v) / min(v) > 20


# --- why the numbers differ ------------------------------------------------------------------

def _find(rows, impl, device, work, batch=None, threads=None, source=None):
    for r in rows:
        if (r["impl"] == impl and r["device"] == device and r["work"] == work and r["median_s"] is not None
                and (batch is None or r["batch_size"] == batch) and (threads is None or r.get("threads") == threads)
                and (source is None or r.get("source") == source)):
            return r
    return None


def _t(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _times(ratio: float) -> str:
    return f"{ratio:.0f}× as long" if ratio >= 10 else f"{ratio:.1f}× as long"


def explanations(rows: list[dict[str, Any]], model: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(topic, one line) for each reason the figures differ, with this data's numbers where
    the rows hold them (the first source's fp32 CPU rows with all threads), general words otherwise."""
    lower = [r for r in rows if r.get("precision", "fp32") != "fp32"]
    rows = [r for r in rows if r.get("precision", "fp32") == "fp32"]
    src = rows[0].get("source") if rows else None
    mine = [r for r in rows if r.get("source") == src]
    top = _max_threads(mine).get(src)
    out = []

    dl = next((r for r in mine if r["impl"] == "dataloader" and r["device"] == "cpu"
               and r["work"] == "train_step" and r["median_s"] is not None), None)
    # against PyTorch's fastest thread count: the DataLoader row itself has no choice of threads
    pts = [r for r in mine if r["impl"] == "pytorch" and r["device"] == "cpu" and r["work"] == "train_step"
           and dl and r["batch_size"] == dl["batch_size"] and r["median_s"] is not None]
    pt = min(pts, key=lambda r: r["median_s"]) if pts else None
    line = ("The usual DataLoader turns every image into a PIL image and back into a tensor, one at a "
            "time in Python; the other rows slice one tensor prepared once")
    if dl and pt:
        line += (f" — here a training step on {dl['batch_size']} images took {_t(dl['median_s'])} "
                 f"that way against {_t(pt['median_s'])} ({_times(dl['median_s'] / pt['median_s'])}).")
    out.append(("DataLoader vs one tensor", line + ("" if line.endswith(".") else ".")))

    lat = _find(mine, "pytorch", "cpu", "latency", 1, top)
    inf = next((r for r in mine if r["impl"] == "pytorch" and r["device"] == "cpu" and r["work"] == "inference"
                and r.get("threads") == top and r["median_s"] is not None), None)
    line = ("Every call has a fixed cost (Python, dispatch, allocating outputs) that a big batch shares "
            "among all its images")
    if lat and inf:
        per = inf["median_s"] / inf["batch_size"]
        line += (f": one image alone took {_t(lat['median_s'])}, in a batch of {inf['batch_size']:,} it "
                 f"was {_t(per)} per image ({lat['median_s'] / per:.0f}× less).")
    out.append(("Batch size", line + ("" if line.endswith(".") else ".")))

    one = _find(mine, "pytorch", "cpu", "inference", threads=1)
    many = _find(mine, "pytorch", "cpu", "inference", one["batch_size"] if one else None, top) if top and top > 1 else None
    line = ("More CPU threads only help when each matrix product is big enough to split, and when "
            "no other work (a training run, another user) wants the same cores")
    if one and many:
        ratio = one["median_s"] / many["median_s"]
        line += (f": {top} threads made inference {ratio:.1f}× as fast as 1 thread here"
                 + (" — slower, because the cores were busy" if ratio < 1 else "") + ".")
    out.append(("Threads", line + ("" if line.endswith(".") else ".")))

    gpu = next((r for r in rows if r["device"] == "cuda" and r["impl"] == "pytorch" and r["work"] == "inference"
                and r["median_s"] is not None), None)
    line = ("On a GPU the inputs must first be copied to its memory; for a small model that copy "
            "can take longer than the arithmetic itself")
    if gpu and gpu.get("transfer_s"):
        line += (f" — on {gpu.get('hardware') or 'the GPU'}: copying {gpu['batch_size']:,} images took "
                 f"{_t(gpu['transfer_s'])}, computing on them {_t(gpu['median_s'])}.")
    out.append(("GPU transfer vs compute", line + ("" if line.endswith(".") else ".")))

    flops = (model or {}).get("forward_flops_per_image")
    name = (model or {}).get("name", "the MLP")
    line = (f"{name} needs only {flops / 1e6:.1f} MFLOP per image" if flops else
            "A tiny MLP needs well under a MFLOP per image")
    line += (": a GPU launches a few kernels per layer (microseconds each, whatever their size), so "
             "one image or a small batch is launch-bound and a CPU is as fast or faster; the GPU "
             "wins only with big batches or big models")
    gl = next((r for r in rows if r["device"] == "cuda" and r["impl"] == "pytorch" and r["work"] == "latency"
               and r["median_s"] is not None), None)
    if gl and lat:
        line += f" (one image: {_t(gl['median_s'])} on the GPU vs {_t(lat['median_s'])} on this CPU)"
    out.append(("A tiny MLP on a GPU", line + "."))

    np_inf = _find(mine, "manual-numpy", "cpu", "inference", inf["batch_size"] if inf else None, top)
    line = ("For inference both sides hand the heavy part to a BLAS matrix product (NumPy and "
            "PyTorch may use different BLAS libraries), so the hand-written twin is close to PyTorch")
    if np_inf and inf:
        line += (f": {_t(np_inf['median_s'])} vs {_t(inf['median_s'])} for "
                 f"{inf['batch_size']:,} images")
    out.append(("NumPy twin vs PyTorch", line + "."))

    ort = _find(mine, "onnxruntime", "cpu", "inference", inf["batch_size"] if inf else None, top)
    line = ("ONNX Runtime runs the same model exported to an ONNX graph (the file the Results page "
            "downloads), with its own kernels and no Python between the layers")
    if ort and inf:
        line += f": {_t(ort['median_s'])} vs PyTorch's {_t(inf['median_s'])} for {inf['batch_size']:,} images"
        if ort.get("agreement") is not None:
            line += f", the same labels on {ort['agreement']:.2%} of the test images"
    out.append(("ONNX Runtime vs PyTorch", line + "."))

    bf16 = next((r for r in lower if r.get("source") == src and r["device"] == "cpu"), None)
    line = ("bf16 halves the bytes of every weight and activation; CPUs with AMX (recent Intel "
            "Xeons) or AVX512-BF16 (e.g. recent AMD EPYCs) multiply in it natively; elsewhere "
            "PyTorch emulates it and it is several times slower than fp32")
    if bf16 and not bf16["available"]:
        line += f" — {bf16.get('reason')}"
    out.append(("bf16 on the CPU", line + "."))
    return out


# --- the same work, two figures; bars that are not there ------------------------------------

QUICK_DATALOADER = ("not timed over the 10,000 test images in a quick run (one pass takes about half "
                    "a second); the full benchmark times it")


def turns_vs_alone(results_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each source and implementation in its headline: the headline's figure (the
    implementations taking turns, one call each round) next to the same work's own row (10,000
    images, the same threads, that implementation alone, many calls in a row). Keys: source,
    impl, name, turns_ms, alone_ms, threads."""
    out = []
    for res in results_list:
        h = res.get("headline") or {}
        threads, n = h.get("threads"), h.get("batch_size", 10000)
        for impl, s in (h.get("median_s") or {}).items():
            name, _, prec = impl.partition(" ")
            own = next((r for r in res.get("rows", []) if r["impl"] == name and r["device"] == "cpu"
                        and r.get("precision", "fp32") == (prec or "fp32")
                        and r["work"] == "inference" and r["batch_size"] == n and r.get("threads") == threads
                        and r.get("median_s") is not None), None)
            if own is None or abs(own["median_s"] - s) < 1e-12:
                continue  # no row of its own, or the headline quotes that row (the DataLoader)
            out.append({"source": res.get("label"), "impl": impl, "name": impl_name(impl),
                        "turns_ms": s * 1000, "alone_ms": own["median_s"] * 1000, "threads": threads,
                        "pause_s": h.get("pause_s") or 0.0})
    return out


def turns_sentence(pairs: list[dict[str, Any]]) -> str | None:
    """One paragraph on why the headline and the detail chart differ for the same work, with the
    figures of the first source; None when they agree within 25%. A file measured before the
    benchmark paused between turns (no "pause_s" in its headline) differs for a known reason:
    thread pools still spinning from the previous call; one measured with the pause, because the
    machine's other work changed between the two measurements."""
    if not pairs:
        return None
    first = [p for p in pairs if p["source"] == pairs[0]["source"]]
    differ = [p for p in first if max(p["turns_ms"], p["alone_ms"]) > 1.25 * min(p["turns_ms"], p["alone_ms"])]
    if not differ:
        return None
    figures = "; ".join(f"{p['name']} {_ms_text(p['turns_ms'])} taking turns, {_ms_text(p['alone_ms'])} alone"
                        for p in differ)
    head = ("The same work, two figures: here the implementations take turns, one call each round; in "
            "the detail chart below (inference, batch 10,000, all threads) each one runs alone, many calls "
            f"in a row. {figures} ({plural(first[0]['threads'] or 0, 'thread')}). ")
    if first[0]["pause_s"]:
        return head + (f"The benchmark let the CPU idle {first[0]['pause_s']:g} s before each turn, so the "
                       "difference is other work on the machine that came or went between the two "
                       "measurements (see the load average on its card): compare figures of one kind.")
    return head + ("This file was measured without a pause between turns: after a call, NumPy's BLAS "
                   "threads and PyTorch's thread pool keep spinning for a moment, waiting for more work, on "
                   "the cores the next implementation needs (on 2 cores PyTorch took 28-48 ms taking turns "
                   "against 13-14 ms alone). Benchmarks run now pause 0.2 s before each turn, and the two "
                   "figures agree: take the detail chart's.")


def _ms_text(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def headline_missing(results_list: list[dict[str, Any]]) -> list[str]:
    """'<implementation>: why' for each implementation a results file timed that has no bar in
    the headline chart."""
    out = []
    for res in results_list:
        h = res.get("headline")
        if not h:
            continue
        impls = (res.get("settings") or {}).get("impls") or []
        for impl in impls:
            if impl in (h.get("median_s") or {}):
                continue
            if impl == "dataloader" and is_quick(res):
                why = QUICK_DATALOADER
            else:
                row = next((r for r in res.get("rows", []) if r["impl"] == impl and r["device"] == "cpu"
                            and r["work"] == "inference"), None)
                why = (row or {}).get("reason") or "its inference over the 10,000 test images was not timed"
            out.append(f"{IMPL_NAMES.get(impl, impl)}" + (f" ({res.get('label')})" if len(results_list) > 1 else "")
                       + f": {why}")
    return out


def chart_missing(rows: list[dict[str, Any]], work: str, batch: int, one_thread: bool = False,
                  quick_sources: tuple[str, ...] = ()) -> list[str]:
    """'<implementation>: why' for each implementation with timed rows in these results that has
    no bar in the detail chart for this work x batch size (x threads): timed with other batch
    sizes or threads only, not timed in a quick run, or the row's own reason."""
    out: dict[str, str] = {}
    timed = [r for r in rows if r["median_s"] is not None]
    shown = {(r["impl"], r.get("source")) for r in _drawn(rows, work, batch, one_thread)}
    for impl, src in sorted({(r["impl"], r.get("source")) for r in timed}, key=lambda k: list(IMPL_NAMES).index(k[0])
                            if k[0] in IMPL_NAMES else 99):
        if (impl, src) in shown or IMPL_NAMES.get(impl, impl) in out:
            continue
        mine = [r for r in rows if r["impl"] == impl and r.get("source") == src and r["work"] == work]
        here = [r for r in mine if r["batch_size"] == batch]
        sizes = sorted({r["batch_size"] for r in mine if r["median_s"] is not None})
        threads = sorted({r.get("threads") for r in here if r["median_s"] is not None and r["device"] == "cpu"})
        if here and threads:
            why = f"timed with {plural(threads[0], 'thread')} only" if len(threads) == 1 else "not timed with these threads"
            if impl == "dataloader":
                why += " (it spends its time in Python, one image at a time: more threads change nothing)"
        elif sizes:
            why = f"{WORK_NAMES.get(work, work)} timed with batch {' and '.join(f'{b:,}' for b in sizes)} only"
        elif here and here[0].get("reason"):
            why = here[0]["reason"]
        elif impl == "dataloader" and src in quick_sources:
            why = "not timed for this work in a quick run; the full benchmark times it"
        else:
            why = f"{WORK_NAMES.get(work, work)} not timed"
        out[IMPL_NAMES.get(impl, impl)] = why
    return [f"{name}: {why}" for name, why in out.items()]


def _drawn(rows: list[dict[str, Any]], work: str, batch: int, one_thread: bool) -> list[dict[str, Any]]:
    """The rows the detail chart draws: timed, this work and batch size, CPU rows with all of
    their machine's threads (or one)."""
    top = _max_threads(rows)
    return [r for r in rows if r["work"] == work and r["batch_size"] == batch and r["median_s"] is not None
            and not (r["device"] == "cpu" and r.get("threads") != (1 if one_thread else top.get(r["source"])))]


def gpu_check_rows(results_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per check of the files made by scripts/gpu_check.py (their "gpu_check" block):
    where, which check, its status, and its figures in words (time to 93%/94%, agreements) or
    the reason it failed or was skipped."""
    out = []
    for res in results_list:
        block = res.get("gpu_check")
        if not isinstance(block, dict):
            continue
        for c in block.get("checks") or []:
            if not isinstance(c, dict):
                continue
            if c.get("status") != "ok":
                what = str(c.get("reason") or "")
            elif "reached" in c:
                reach = c.get("reached") or {}
                what = ", ".join(f"{k} after {v['seconds']:.1f} s (epoch {v['epoch']})" if isinstance(v, dict)
                                 else f"{k} not reached" for k, v in reach.items())
                what += f"; best {c.get('best_test_accuracy', 0):.2%} in {c.get('epochs')} epochs ({c.get('precision')})"
            elif "agreement" in c and isinstance(c["agreement"], (int, float)):
                what = f"label agreement {c['agreement']:.2%}, max |logit diff| {c.get('max_logit_diff', 0):.1e}"
            else:
                what = f"{c.get('timed_rows', 0)} rows timed" if "timed_rows" in c else ""
            out.append({"source": res.get("label", ""), "device": block.get("device", ""),
                        "check": str(c.get("name", "")), "status": str(c.get("status", "")), "result": what})
    return out
