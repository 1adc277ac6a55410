"""The class at its worst, on one class server on this machine (a benchmark, not a test):

  * 30 browser sessions open Home and Results at once (server CPU-seconds per view);
  * each of the 30 students launches 3 runs at the same moment (threads calling submit.submit,
    the function behind Launch, each student with an address of their own);
  * 5 sessions open the Map of the same uncached model at once in the browser, and 5 ask for
    the same uncached robustness curve at the same moment;
  * one curious student opens 20 fresh cookies from one computer and launches from each, asks
    for a map of the shipped CNN's widest layer, and submits a batch-60,000 CNN;
  * then everything is left to finish.

It reports the peak memory of the machine (the 30 browsers included), of the server's own
processes together (web server, dispatcher, trainers, analysis jobs) and of the web process,
the memory per waiting run, runs accepted and refused (each refusal's sentence, counted), how
many times each shared analysis was computed, every session rendered or not, runs lost
(accepted, then failed or interrupted: must be 0), and the time until all runs finished.

    python scripts/load_bench.py --worst [--out FILE]
"""
from __future__ import annotations

import asyncio
import collections
import os
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "load-bench"
TINY = ["mlp-seed000", {"epochs": 1, "batch_size": 256, "threads": 1}, 2000]


def meminfo_used_mb() -> float:
    with open("/proc/meminfo") as f:
        m = {l.split(":")[0]: int(l.split()[1]) for l in f}
    return (m["MemTotal"] - m["MemAvailable"]) / 1024


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


def server_pids(artifacts: Path) -> list[int]:
    """The class server's own processes: the web server, the dispatcher, trainers and analysis
    jobs (every process started with this server's FMNIST_ARTIFACTS). The 30 browsers are not
    among them: in a class they run on the students' machines."""
    tag = f"FMNIST_ARTIFACTS={artifacts}".encode()
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if tag in f.read().split(b"\0") and int(pid) != os.getpid():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def server_mb(artifacts: Path) -> float:
    return sum(rss_mb(p) for p in server_pids(artifacts))


class Sampler(threading.Thread):
    """Peak memory of the machine, of the server's processes together and of the web process,
    every 0.25 s."""

    def __init__(self, server_pid: int, artifacts: Path):
        super().__init__(daemon=True)
        self.pid, self.artifacts, self.stop = server_pid, artifacts, False
        self.peak_machine = self.peak_web = self.peak_server = 0.0

    def run(self):
        while not self.stop:
            self.peak_machine = max(self.peak_machine, meminfo_used_mb())
            self.peak_web = max(self.peak_web, rss_mb(self.pid))
            self.peak_server = max(self.peak_server, server_mb(self.artifacts))
            time.sleep(0.25)


def _user(name: str, token: str, ip: str):
    from fmnist_core import roles
    return roles.User(name, roles.user_id(token), address=roles.user_id(f"addr:{ip}"))


def launch_all(users_specs) -> tuple[list[str], list[str]]:
    """Every (user, spec) at the same moment, each in its own thread; (accepted ids, refusals)."""
    from fmnist_core import submit
    ok, refused, lock = [], [], threading.Lock()
    barrier = threading.Barrier(len(users_specs))

    def go(user, spec, label):
        barrier.wait()
        try:
            rid = submit.submit(spec, label=label, user=user)
            with lock:
                ok.append(rid)
        except Exception as exc:  # every refusal is a sentence: counted by its words
            with lock:
                refused.append(f"{type(exc).__name__}: {exc}")
    threads = [threading.Thread(target=go, args=usl) for usl in users_specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, refused


async def worst_async(args) -> dict:
    from playwright.async_api import async_playwright
    from browser_util import CHROMIUM, CHROMIUM_ARGS, streamlit_server
    from load_bench import _server_pid, phase, render
    from fmnist_core import adversarial, analysis, runs
    from fmnist_core.models import CNNConfig
    from fmnist_core.spec import RunSpec, run_spec
    from fmnist_core.train import TrainConfig
    out: dict = {"scenario": "class at its worst", "sessions": 30, "phases": []}
    artifacts = Path(tempfile.mkdtemp(prefix="fmnist-worst-"))
    os.environ.update(FMNIST_TRACKING_URI=f"sqlite:///{artifacts / 'mlflow.db'}", FMNIST_ARTIFACTS=str(artifacts))
    runs.ARTIFACTS = artifacts
    # the shipped models: their maps and curves are cached under this fresh artifacts folder,
    # so nothing of theirs is computed yet
    models = ROOT / "artifacts" / "models"
    env = {"FMNIST_TEACHER_PASSWORD": PASSWORD}
    before_mb = meminfo_used_mb()
    with streamlit_server(artifacts, env=env) as url:
        pid = _server_pid(url)
        sampler = Sampler(pid, artifacts)
        sampler.start()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            pages = []
            for k in range(30):
                ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
                await ctx.add_cookies([{"name": "fmnist_token", "value": f"{k:032d}", "url": url},
                                       {"name": "fmnist_name", "value": f"Student {k:02d}", "url": url}])
                page = await ctx.new_page()
                page.set_default_timeout(300_000)
                pages.append(page)
            await render(pages[0], f"{url}/")  # a first visit warms the server's caches
            out["phases"].append(await phase("home, 30 at once", pages, f"{url}/", pid))
            out["phases"].append(await phase("results, 30 at once", pages, f"{url}/results", pid))

            # 30 students x 3 launches, and the curious student's 20 cookies, all at one moment
            spec = RunSpec.from_preset(TINY[0], train=TINY[1], train_limit=TINY[2]).to_dict()
            students = [(_user(f"Student {k:02d}", f"{k:032d}", f"10.0.0.{k + 1}"), spec, "tiny") for k in range(30)]
            curious = [(_user(f"Curious {j:02d}", f"c{j:031d}", "10.0.1.1"), spec, "curious") for j in range(20)]
            wide = run_spec(CNNConfig(channels=(2048, 8), kernel=1, fc=(8,)),
                            TrainConfig(epochs=30, batch_size=60000, val_fraction=0.0))
            used0, server0 = meminfo_used_mb(), server_mb(artifacts)
            db0 = sum(f.stat().st_size for f in artifacts.glob("mlflow.db*"))
            t0 = time.time()
            ok, refused = await asyncio.to_thread(
                launch_all, [u for u in students for _ in range(3)] + curious + [(curious[0][0], wide, "huge")])
            out["launch_seconds"] = time.time() - t0
            await asyncio.sleep(2.0)
            active = runs.list_runs(statuses=runs.ACTIVE)
            n_waiting = sum(r["status"] == "queued" for r in active)
            db1 = sum(f.stat().st_size for f in artifacts.glob("mlflow.db*"))
            # what waiting costs the server: its processes' growth and the store's, per waiting run
            # (a trainer started meanwhile is left out: it is a running run, not a waiting one)
            grown = sum(rss_mb(p) for p in server_pids(artifacts) if not _is_trainer(p)) - server0
            out["memory_per_waiting_run_mb"] = max(grown + (db1 - db0) / 2**20, 0.0) / max(n_waiting, 1)
            out["store_growth_per_run_kb"] = (db1 - db0) / 1024 / max(len(ok), 1)
            out["machine_growth_per_waiting_run_mb"] = max(meminfo_used_mb() - used0, 0.0) / max(n_waiting, 1)
            out["waiting_after_launch"] = n_waiting
            out["accepted"], out["refused"] = len(ok), len(refused)
            out["refusals"] = dict(collections.Counter(refused).most_common())

            # the same uncached map (browser) and robustness curve (core) asked for by 5 at once
            map_pages = pages[:5]
            map_phase = asyncio.gather(*(render(pg, f"{url}/map", 300) for pg in map_pages), return_exceptions=True)
            curve_asks = [asyncio.to_thread(analysis.request, "robustness", str(models / "mlp.pt"),
                                            {"attack": "FGSM", "epsilons": [float(e) for e in adversarial.CURVE_EPSILONS]}, f"s{k}") for k in range(5)]
            widest = asyncio.to_thread(_ask_widest, models / "cnn.pt")
            got = await asyncio.gather(map_phase, *curve_asks, widest, return_exceptions=True)
            out["map_sessions_rendered"] = sum(isinstance(t, float) for t in got[0])
            out["widest_layer_map"] = got[-1] if isinstance(got[-1], dict) else f"{type(got[-1]).__name__}: {got[-1]}"

            # everyone keeps browsing the leaderboard while it all finishes
            deadline = time.time() + args.max_wait
            rounds = 0
            while time.time() < deadline:
                act = runs.list_runs(statuses=runs.ACTIVE)
                jobs = analysis.waiting() + analysis.running()
                if not act and not jobs:
                    break
                if rounds < 3:
                    out["phases"].append(await phase(f"leaderboard while training #{rounds + 1}", pages[5:],
                                                     f"{url}/leaderboard", pid))
                    rounds += 1
                else:
                    await asyncio.sleep(2)
            out["seconds_until_all_finished"] = time.time() - t0
            final = {r["run_id"]: r for r in runs.list_runs()}
            out["finished"] = sum(final[i]["status"] == "finished" for i in ok if i in final)
            out["runs_lost"] = [i for i in ok if i not in final or final[i]["status"] in ("failed", "interrupted")]
            out["runs_not_finished_at_the_end"] = [i for i in ok if i in final and final[i]["status"] in runs.ACTIVE]
            out["analyses"] = [{k: j.get(k) for k in ("kind", "params", "state", "computed", "askers")}
                               for j in analysis._all()]
            for i, pg in enumerate(map_pages):
                await pg.screenshot(path=str(artifacts / f"map-{i}.png"))
            out["all_sessions_rendered"] = all(ph["not_rendered"] == 0 for ph in out["phases"])
            await browser.close()
        sampler.stop = True
        out["peak_machine_used_mb"] = sampler.peak_machine
        out["machine_used_before_mb"] = before_mb
        out["peak_web_process_rss_mb"] = sampler.peak_web
        out["peak_server_processes_rss_mb"] = sampler.peak_server
    out["artifacts"] = str(artifacts)
    return out


def _is_trainer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return b"fmnist_core.execute" in cmd or b"fmnist_core.analysis" in cmd
    except OSError:
        return False


def _ask_widest(ckpt: Path) -> dict:
    """The curious student's map of the widest layer of the shipped CNN, under the class limit."""
    from fmnist_core import analysis, embed
    from fmnist_core.models import load_model
    from fmnist_core.roles import class_settings
    model = load_model(ckpt)
    widest = max(embed.layer_names(model), key=lambda n: embed.layer_width(model, n))
    try:
        rec = analysis.request("map", str(ckpt), {"layer": widest, "method": "pca"}, "curious",
                               max_mb=class_settings().max_job_mb)
        return {"layer": widest, "width": embed.layer_width(model, widest), "state": rec["state"],
                "price_mb": rec.get("price_mb")}
    except Exception as exc:
        return {"layer": widest, "refused": str(exc)}
