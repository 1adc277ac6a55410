"""The one dispatcher (fmnist_core/queue.py) and launching (submit.py) on a real run store:
exactly N runs under N+ parallel launches, a waiting run is a record (no process), round-robin
across students, the memory budget and the benchmark's priority, a dead trainer put back in
line, and the dispatcher killed mid-queue and restarted with nothing lost and the order kept."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fmnist_core import queue, roles, runs, submit
from fmnist_core.models import MLPConfig
from fmnist_core.spec import run_spec
from fmnist_core.train import TrainConfig

ADA = roles.User("ada", roles.user_id("a" * 32), address=roles.user_id("addr:10.0.0.1"))
BO = roles.User("bo", roles.user_id("b" * 32), address=roles.user_id("addr:10.0.0.2"))
CY = roles.User("cy", roles.user_id("c" * 32), address=roles.user_id("addr:10.0.0.3"))
TEACHER = roles.User("teacher", roles.user_id("t" * 32), teacher=True)
TINY = run_spec(MLPConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=256, device="cpu", threads=1),
                train_limit=2000)


@pytest.fixture
def classroom(store, monkeypatch):
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "correct horse")
    return store


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.add(int(pid))
            except OSError:
                pass
    return out


def test_exactly_the_limit_under_parallel_launches(classroom):
    """Eight launches at once by one student against a limit of 2 create exactly 2 runs; the
    other six are refused with one sentence each; no process is started for a waiting run."""
    before = _children()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(submit.submit, TINY, "x", ADA, None, False) for _ in range(8)]
    made, refused = [], []
    for f in futures:
        try:
            made.append(f.result())
        except roles.PermissionDenied as exc:
            refused.append(str(exc))
    assert len(made) == 2 and len(refused) == 6
    assert all(m.count(".") <= 1 and "class limit is 2" in m for m in refused), refused
    assert len(runs.list_runs()) == 2
    assert all(r["status"] == "queued" for r in runs.list_runs())
    assert _children() == before  # waiting runs are records: nothing was spawned for them


def test_fresh_cookies_from_one_address_gain_nothing(classroom):
    """A private window is a new student, not a new computer: the limit also holds per address."""
    submit.submit(TINY, "x", ADA, start_dispatcher=False)
    same_pc = roles.User("ada2", roles.user_id("z" * 32), address=ADA.address)
    submit.submit(TINY, "x", same_pc, start_dispatcher=False)
    third = roles.User("ada3", roles.user_id("y" * 32), address=ADA.address)
    with pytest.raises(roles.PermissionDenied, match="this computer already has 2 run"):
        submit.submit(TINY, "x", third, start_dispatcher=False)
    submit.submit(TINY, "x", BO, start_dispatcher=False)  # another computer may


def test_the_class_queue_has_a_cap(classroom):
    roles.set_class_settings(TEACHER, max_waiting_total=3)
    for u in (ADA, BO, CY):
        submit.submit(TINY, "x", u, start_dispatcher=False)
    dee = roles.User("dee", roles.user_id("d" * 32))
    with pytest.raises(roles.PermissionDenied, match=r"the class queue is full \(3 runs waiting"):
        submit.submit(TINY, "x", dee, start_dispatcher=False)


def test_a_job_over_the_memory_limit_is_refused_by_its_price(classroom):
    """The issue's 37,594-parameter CNN (first conv 2,048 channels, 1x1) at batch 60,000: few
    parameters, tens of GB of activations. Refused before any run exists, with the figure."""
    from fmnist_core.models import CNNConfig
    wide = run_spec(CNNConfig(channels=(2048, 8), kernel=1, fc=(8,)),
                    TrainConfig(epochs=30, batch_size=60000, val_fraction=0.0))
    with pytest.raises(roles.PermissionDenied, match=r"would need about \d+\.\d GB of memory; the class limit is 2.9 GB"):
        submit.submit(wide, "wide", ADA, start_dispatcher=False)
    with pytest.raises(roles.PermissionDenied, match="this server runs jobs within"):
        submit.submit(wide, "wide", TEACHER, start_dispatcher=False)  # the server's budget binds the teacher too
    assert runs.list_runs() == []


def test_round_robin_across_students_then_by_time(classroom):
    """Ada launches three, then Bo two, then Cy one: the dispatcher's order takes turns."""
    roles.set_class_settings(TEACHER, max_active_per_student=3)
    ids = {}
    for who, n in ((ADA, 3), (BO, 2), (CY, 1)):
        for k in range(n):
            ids[f"{who.name}{k + 1}"] = submit.submit(TINY, "x", who, start_dispatcher=False)
            time.sleep(0.01)
    order = [r["run_id"] for r in queue.waiting(runs.list_runs())]
    name = {v: k for k, v in ids.items()}
    assert [name[i] for i in order] == ["ada1", "bo1", "cy1", "ada2", "bo2", "ada3"]
    est = queue.estimates(runs.list_runs(), slots=1)
    assert [est[i]["position"] for i in order] == [1, 2, 3, 4, 5, 6]


def test_the_dispatcher_keeps_the_memory_budget_and_the_benchmark_first(classroom, monkeypatch):
    started = []
    monkeypatch.setattr("fmnist_core.executors.local.start", lambda r: started.append(r["run_id"]) or
                        runs.set_status(r["run_id"], "running", pid=os.getpid(), host=runs.HOST))
    roles.set_class_settings(TEACHER, max_concurrent=2)
    a, b = submit.submit(TINY, "x", ADA, start_dispatcher=False), submit.submit(TINY, "x", BO, start_dispatcher=False)
    peak = queue.price_mb(runs.load_summary(a))
    assert 1000 < peak < 3000  # the tiny run's price: the trainer process is most of it
    monkeypatch.setenv("FMNIST_MEMORY_BUDGET_MB", str(1.5 * peak))
    # the teacher's benchmark waits for the machine: nothing starts
    queue.exclusive()._mark("waiting")
    queue.Dispatcher(say=lambda m: None).tick()
    assert started == []
    (runs.ARTIFACTS / ".slots" / queue.BENCH_MARK).unlink()
    # two slots, but two of these would pass the budget: one starts
    queue.Dispatcher(say=lambda m: None).tick()
    assert started == [a]
    monkeypatch.setenv("FMNIST_MEMORY_BUDGET_MB", str(2.5 * peak))
    queue.Dispatcher(say=lambda m: None).tick()
    assert started == [a, b]


def test_a_trainer_that_died_before_training_goes_back_in_line_then_fails(classroom):
    rid = submit.submit(TINY, "x", ADA, start_dispatcher=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = queue.Dispatcher(say=lambda m: None)
    for tries in range(1, queue.MAX_TRIES + 1):
        runs.set_status(rid, "queued", dispatched=time.time(), pid=dead.pid, host=runs.HOST, tries=tries)
        d._tidy(runs.load_summary(rid), time.time())
        r = runs.load_summary(rid)
        if tries < queue.MAX_TRIES:
            assert r["status"] == "queued" and not queue.dispatched(r)  # back in line, nothing lost
            assert r["run_id"] in [w["run_id"] for w in queue.waiting(runs.list_runs())]
    assert r["status"] == "failed" and "ended 3 times before training began" in r["status_info"]["message"]


def test_a_waiting_run_is_stopped_at_once(classroom):
    rid = submit.submit(TINY, "x", ADA, start_dispatcher=False)
    with pytest.raises(roles.PermissionDenied):
        submit.stop_run(BO, rid)
    submit.stop_run(ADA, rid)
    assert runs.load_summary(rid)["status"] == "cancelled"
    assert queue.waiting(runs.list_runs()) == []


def test_the_trainer_rechecks_a_stored_spec_against_the_class_limits(classroom):
    """A spec rewritten in the store after submit (or created around submit) is not trained."""
    from fmnist_core.execute import execute_run
    rid = runs.create_run(run_spec(MLPConfig(hidden=(64,)), TrainConfig(epochs=40)), label="forged",
                          owner="ada", owner_id=ADA.id)
    with pytest.raises(roles.PermissionDenied, match="40 epochs asked; the class limit is 30"):
        execute_run(rid)
    r = runs.load_summary(rid)
    assert r["status"] == "failed" and "class limit" in r["status_info"]["message"]
    assert not r["status_info"].get("started")  # refused before any training


def _wait_all_done(ids, timeout=300, every=0.25):
    seen_running, overlap = [], 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        rs = {r["run_id"]: r for r in runs.list_runs()}
        now_running = [i for i in ids if rs[i]["status"] == "running"]
        overlap = max(overlap, len(now_running))
        for i in now_running:
            if i not in seen_running:
                seen_running.append(i)
        if all(rs[i]["status"] not in runs.ACTIVE for i in ids):
            return rs, seen_running, overlap
        time.sleep(every)
    raise AssertionError(f"runs still active after {timeout} s: {[rs[i]['status_info'] for i in ids]}")


@pytest.mark.slow
def test_dispatcher_killed_mid_queue_restarts_with_nothing_lost_and_order_kept(classroom):
    ids = [submit.submit(TINY, "x", u, start_dispatcher=False) for u in (ADA, ADA, BO, BO)]
    fair = [r["run_id"] for r in queue.waiting(runs.list_runs())]
    assert fair == [ids[0], ids[2], ids[1], ids[3]]
    first = subprocess.Popen([sys.executable, "-m", "fmnist_core.queue"], start_new_session=True,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (queue.read_json(queue.state_path()) or {}).get("pid") != first.pid:
        time.sleep(0.1)  # the first holds the lock before the second tries
    second = subprocess.Popen([sys.executable, "-m", "fmnist_core.queue"], stderr=subprocess.PIPE, text=True)
    assert "another dispatcher" in second.communicate(timeout=60)[1] and second.returncode == 0
    deadline = time.time() + 120
    while time.time() < deadline and runs.load_summary(ids[0])["status"] != "running":
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)  # mid-queue: one run training, three waiting
    first.wait()
    assert not queue.dispatcher_alive() or queue.ensure_dispatcher() is False
    time.sleep(queue.BEAT_STALE_S + 0.5)
    assert queue.ensure_dispatcher()  # found dead (no beat) and started again
    rs, started, overlap = _wait_all_done(ids)
    assert [rs[i]["status"] for i in ids] == ["finished"] * 4, [rs[i]["status_info"] for i in ids]
    by_start = sorted(ids, key=lambda i: rs[i]["status_info"]["started"])
    assert by_start == fair and overlap == 1


@pytest.mark.slow
def test_two_training_slots_end_to_end(classroom):
    roles.set_class_settings(TEACHER, max_concurrent=2)
    ids = [submit.submit(TINY, "x", u) for u in (ADA, BO, CY)]
    rs, started, overlap = _wait_all_done(ids, every=0.1)
    assert [rs[i]["status"] for i in ids] == ["finished"] * 3
    assert overlap == 2  # two at once, never three
    assert started[-1] == ids[2]


def test_a_concurrent_view_reads_the_queue_without_a_private_name():
    """No module uses another's private names for the queue (the old runs._alive)."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    for p in list((root / "fmnist_core").rglob("*.py")) + list((root / "ui").rglob("*.py")) + list((root / "pages").rglob("*.py")):
        text = p.read_text()
        assert "runs._alive" not in text and "runs._summary" not in text, p


def test_the_core_has_no_import_circle():
    """roles only decides: it imports neither executors nor submit; executors never import submit."""
    import ast
    import pathlib
    core = pathlib.Path(__file__).resolve().parent.parent / "fmnist_core"
    def imports(name):
        tree = ast.parse((core / name).read_text())
        return {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imports("roles.py") if "executors" in m or "submit" in m or "queue" in m}
    for f in ("local.py", "ray.py", "__init__.py"):
        assert not {m for m in imports(f"executors/{f}") if "submit" in m or "roles" in m}
    assert not {m for m in imports("runs.py") if "queue" in m or "submit" in m or "executors" in m}


def test_a_run_an_executor_cannot_take_fails_with_the_reason(classroom, monkeypatch):
    """FMNIST_EXECUTOR=ray without RAY_ADDRESS: the run fails with that sentence instead of
    waiting for ever, and the next in line still starts."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bad = submit.submit(TINY, "x", ADA, executor="ray", start_dispatcher=False)
    started = []
    monkeypatch.setattr("fmnist_core.executors.local.start", lambda r: started.append(r["run_id"]) or
                        runs.set_status(r["run_id"], "running", pid=os.getpid(), host=runs.HOST))
    good = submit.submit(TINY, "x", BO, start_dispatcher=False)
    queue.Dispatcher(say=lambda m: None).tick()
    r = runs.load_summary(bad)
    assert r["status"] == "failed" and "could not start" in r["status_info"]["message"]
    assert "RAY_ADDRESS" in r["status_info"]["message"]
    assert started == [good]
