"""Load benchmark of a class server (a benchmark command, not a test): one `streamlit run`
with a teacher password on loopback, N browser sessions (Playwright contexts in Debian's
Chromium, each with its own student identity) opening pages at once, while L of them launch
trainings.

It reports, as JSON on stdout and a table on stderr:
  * page render time per session (p50 / p95 / max, from navigation to the app's script
    being idle) for Home, Results and Leaderboard with everyone at once;
  * the server process's CPU-seconds per view (utime + stime of the server process from
    /proc, divided by the views in that phase: in class the browsers run on students'
    machines, here they share the cores, so wall times are pessimistic but CPU-seconds are not);
  * the trainings: every launched run in the store (none lost), queue positions seen, the
    time until all have finished, and the epoch time of a training alone vs while the
    sessions browse;
  * with --seed-runs N: first N seeded runs (scripts/seed_runs.py) and the render time of the
    Train and Results pages with that many runs in the store.

    python scripts/load_bench.py [--sessions 30] [--launch 10] [--seed-runs 500] [--out FILE]
    python scripts/load_bench.py --worst [--out FILE]     # the class at its worst: scripts/load_worst.py
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PASSWORD = "load-bench"
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
           && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0;
}"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children: trainings run in their own sessions)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def render(page, url: str, timeout_s: float = 300.0) -> float:
    t0 = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    await page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)
    return time.perf_counter() - t0


async def phase(name: str, pages, url: str, server_pid: int, timeout_s: float = 300.0) -> dict:
    """Every page opens `url` at once; a session that does not render within timeout_s counts
    as not rendered (reported, never hidden)."""
    c0 = cpu_seconds(server_pid)
    got = await asyncio.gather(*(render(p, url, timeout_s) for p in pages), return_exceptions=True)
    c1 = cpu_seconds(server_pid)
    times = [t for t in got if isinstance(t, float)]
    failed = len(got) - len(times)
    out = {"phase": name, "views": len(got), "rendered": len(times), "not_rendered": failed,
           "p50_s": pct(times, 0.5) if times else None, "p95_s": pct(times, 0.95) if times else None,
           "max_s": max(times) if times else None, "server_cpu_s": c1 - c0,
           "server_cpu_s_per_view": (c1 - c0) / max(len(times), 1)}
    print(f"{name:34s} {len(times):3d}/{len(got)} rendered  p50 {out['p50_s'] or 0:6.2f} s  "
          f"p95 {out['p95_s'] or 0:6.2f} s  server CPU {out['server_cpu_s_per_view']:.3f} s/view",
          file=sys.stderr, flush=True)
    return out


def store_env(artifacts: Path) -> None:
    os.environ["FMNIST_TRACKING_URI"] = f"sqlite:///{artifacts / 'mlflow.db'}"


def alone_epoch_seconds(spec_args: list[str]) -> float:
    """One training with nothing else going on: its median epoch time."""
    import subprocess
    out = subprocess.run([sys.executable, "-m", "fmnist_core", "train", *spec_args], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    rid = json.loads(out.stdout.strip().splitlines()[-1])["run_id"]
    from fmnist_core import runs
    return statistics.median(h["epoch_seconds"] for h in runs.load_run(rid)["history"])


async def main_async(args) -> dict:
    from playwright.async_api import async_playwright
    from browser_util import CHROMIUM, CHROMIUM_ARGS, streamlit_server
    from fmnist_core import runs
    result: dict = {"sessions": args.sessions, "launch": args.launch, "phases": []}
    artifacts = Path(tempfile.mkdtemp(prefix="fmnist-load-"))
    store_env(artifacts)
    runs.ARTIFACTS = artifacts
    os.environ["FMNIST_ARTIFACTS"] = str(artifacts)
    if args.seed_runs:
        from seed_runs import seed
        import random
        t0 = time.time()
        seed(args.seed_runs, random.Random(0))
        result["seeded_runs"] = args.seed_runs
        print(f"seeded {args.seed_runs} runs in {time.time() - t0:.0f} s", file=sys.stderr)
    train_args = ["--preset", "mlp-seed000", "--epochs", "2", "--train-limit", "20000", "--threads", "1"]
    result["epoch_s_alone"] = alone_epoch_seconds(train_args)
    print(f"a training alone: {result['epoch_s_alone']:.2f} s per epoch", file=sys.stderr)

    with streamlit_server(artifacts, env={"FMNIST_TEACHER_PASSWORD": PASSWORD}) as url:
        pid = _server_pid(url)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            contexts, pages = [], []
            for k in range(args.sessions):
                ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
                await ctx.add_cookies([{"name": "fmnist_token", "value": f"{k:032d}", "url": url},
                                       {"name": "fmnist_name", "value": f"Student {k:02d}", "url": url}])
                contexts.append(ctx)
                page = await ctx.new_page()
                page.set_default_timeout(300_000)
                pages.append(page)
            # warm the server's caches once (the dataset, the shipped models), as a first visit does
            await render(pages[0], f"{url}/")
            result["phases"].append(await phase("home, everyone at once", pages, f"{url}/", pid))
            result["phases"].append(await phase("results, everyone at once", pages, f"{url}/results", pid))
            if args.seed_runs:
                result["phases"].append(await phase(f"train with {args.seed_runs} runs", pages[:1],
                                                    f"{url}/train", pid))
                result["phases"].append(await phase(f"results with {args.seed_runs} runs", pages[:1],
                                                    f"{url}/results", pid))

            # L students launch the same small training from a settings link; the rest browse
            link = f"{url}/train?start=mlp-seed000&epochs=2&train_limit=20000"
            launchers, browsers_ = pages[:args.launch], pages[args.launch:]
            result["phases"].append(await phase("train from a settings link", launchers, link, pid))
            t_launch = time.time()
            for pg in launchers:  # one click each, as students do, a moment apart
                await pg.get_by_role("button", name="Launch training").click()
                await asyncio.sleep(0.2)
            positions: set[int] = set()
            browse_rounds = 0
            from fmnist_core.queue import estimates
            while True:
                listed = runs.list_runs()
                rs = [r for r in listed if r["config"].get("created", 0) >= t_launch - 5]
                positions |= {q["position"] for q in estimates(listed, 1).values()}
                if len(rs) >= args.launch and all(r["status"] not in runs.ACTIVE for r in rs):
                    break
                if time.time() - t_launch > args.max_wait:
                    break
                if browsers_:
                    result["phases"].append(await phase(f"leaderboard while training #{browse_rounds + 1}",
                                                        browsers_, f"{url}/leaderboard", pid))
                    browse_rounds += 1
                else:
                    await asyncio.sleep(2)
            rs = [r for r in runs.list_runs() if r["config"].get("created", 0) >= t_launch - 5]
            result["trainings"] = {
                "launched": args.launch, "in_store": len(rs),
                "finished": sum(r["status"] == "finished" for r in rs),
                "statuses": sorted({r["status"] for r in rs}),
                "owners": len({r["owner"] for r in rs}),
                "queue_positions_seen": sorted(p for p in positions if p),
                "seconds_until_all_finished": time.time() - t_launch,
                "epoch_s_while_browsing": statistics.median(
                    h["epoch_seconds"] for r in rs for h in runs.load_run(r["run_id"])["history"]) if rs else None}
            t = result["trainings"]
            print(f"trainings: {t['in_store']}/{args.launch} in the store, {t['finished']} finished, "
                  f"queue positions seen {t['queue_positions_seen']}, all done after "
                  f"{t['seconds_until_all_finished']:.0f} s; epoch {t['epoch_s_while_browsing']:.2f} s while "
                  f"browsing vs {result['epoch_s_alone']:.2f} s alone", file=sys.stderr)
            await browser.close()
    return result


def _server_pid(url: str) -> int:
    """The `streamlit run` process listening on this URL's port (from /proc/net/tcp)."""
    port = int(url.rsplit(":", 1)[1])
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
                inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--launch", type=int, default=10)
    ap.add_argument("--seed-runs", type=int, default=0)
    ap.add_argument("--max-wait", type=float, default=2400.0, help="give up on the trainings after this")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--worst", action="store_true", help="the class-at-its-worst scenario (scripts/load_worst.py)")
    args = ap.parse_args()
    from fmnist_core.device import machine_info
    if args.worst:
        from load_worst import worst_async
        res = asyncio.run(worst_async(args))
        res["machine"], res["load_average"] = machine_info(), os.getloadavg()
        text = json.dumps(res, indent=1)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0 if not res["runs_lost"] and not res["runs_not_finished_at_the_end"] else 1
    res = asyncio.run(main_async(args))
    res["machine"] = machine_info()
    res["load_average"] = os.getloadavg()
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if res["trainings"]["finished"] == args.launch else 1


if __name__ == "__main__":
    sys.exit(main())
