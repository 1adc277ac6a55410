import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# read by Ray when it is first imported, whichever test does that first: a loopback cluster
# (tests/servers.py) stays on 127.0.0.1, and nothing reports usage
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# `make test` runs the suite in pytest-xdist workers, one a core: each worker's torch (and the
# trainers and servers it starts) on one thread, so two workers do not fight over two cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ds():
    """The real Fashion-MNIST (never a synthetic stand-in)."""
    from fmnist_core.data import load
    return load()


@pytest.fixture
def runs_root(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d


CI = os.environ.get("CI") == "true"  # .ci/run sets it: there, what must run may not skip


def skip_unless_ci(reason: str) -> None:
    """Skip with the reason on a developer's machine; under CI=true fail instead, so a green CI
    means the test ran (a missing PostgreSQL, Ray or shipped checkpoint is a broken setup there)."""
    if CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


def wait_for(pred, timeout: float = 120.0, what: str = "condition", every: float = 0.3):
    """Poll pred() until it returns something true (returned), or fail naming `what`."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_job(key: str, timeout: float = 180.0) -> dict:
    """A shared analysis job's record once it is done or failed (fmnist_core/analysis.py)."""
    from fmnist_core import analysis
    return wait_for(lambda: (rec := analysis.get(key)) and rec["state"] in ("done", "failed") and rec,
                    timeout, f"job {key} to end")


def run_cli(*args, timeout=300, env=None):
    """python -m fmnist_core ARGS -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "fmnist_core", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def runs_dir(store, tmp_path):
    """An empty run store for pages and jobs (the `store` fixture), and a scratch folder."""
    d = tmp_path / "runs"
    d.mkdir(exist_ok=True)
    return d


def random_checkpoint(path, cfg, seed=0):
    """A checkpoint of `cfg` with seeded random weights (batchnorm with real-looking statistics,
    not the 0/1 defaults), for tests about plumbing rather than accuracy."""
    import torch
    from fmnist_core.models import build_model, save_checkpoint
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return save_checkpoint(path, model, metrics={"test_accuracy": 0.5})


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty embedded run store (SQLite + artifact folder in tmp_path) for this test, and
    the environment that makes subprocesses (`python -m fmnist_core ...`) use it too."""
    from fmnist_core import runs
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("FMNIST_TRACKING_URI", uri)
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)
    # a dispatcher started for this store exits soon after its runs are done, not 5 minutes later
    monkeypatch.setenv("FMNIST_DISPATCHER_IDLE_S", "4")
    real_data = ROOT / "artifacts" / "data"
    if real_data.is_dir() and not (tmp_path / "data").exists():
        (tmp_path / "data").symlink_to(real_data, target_is_directory=True)
    return runs.store()


# --- a class: two students and the teacher, as the core sees them (tests of roles and trash) ---

def _people():
    from fmnist_core import roles
    return (roles.User("ada", roles.user_id("a" * 32)), roles.User("bo", roles.user_id("b" * 32)),
            roles.User("teacher", roles.user_id("t" * 32), teacher=True))


ADA, BO, TEACHER = _people()


@pytest.fixture
def classroom(store, monkeypatch):
    """A store with a teacher password set."""
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "correct horse")
    return store


LITE0_IMAGES = 1000  # features of the first 1,000 images of each split: ~10 s once a session


@pytest.fixture(scope="session")
def lite0_features(ds, tmp_path_factory):
    """The pretrained EfficientNet-Lite0's features (64 px, pooled) of the first LITE0_IMAGES
    images of each split, computed once a session by features.extract into their own folder:
    (that folder's artifacts root, the job's source file, its params)."""
    import torch
    from fmnist_core import features, runs
    torch.set_num_threads(1)  # as the dispatcher's job process: a second thread mostly waits here
    root = tmp_path_factory.mktemp("lite0")
    source, params = features.params_for("efficientnet-lite0", 64, images=LITE0_IMAGES)
    old, runs.ARTIFACTS = runs.ARTIFACTS, root
    try:
        features.extract(source, params, ds)
        folder = features.folder(source, params)
    finally:
        runs.ARTIFACTS = old
    return {"root": root, "folder": folder, "source": source, "params": params}


def link_features(f, artifacts):
    """Make the session's features visible in another artifacts root (a test's store)."""
    dest = Path(artifacts) / "cache" / "features" / f["folder"].name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        dest.symlink_to(f["folder"], target_is_directory=True)
    return dest


def star_png(i: int) -> bytes:
    """A picture for "a class of your own" (tests/test_own_class.py, tests/test_browser_own.py):
    a red five-pointed star, moved, turned and sized a little by `i`, on dark or light paper."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(i)
    im = Image.new("RGB", (160, 160), (25, 25, 30) if i % 2 else (235, 235, 228))
    cx, cy = 80 + rng.integers(-8, 9), 80 + rng.integers(-8, 9)
    r, turn = 58 + rng.integers(-8, 9), rng.normal(0, 0.08)
    pts = [(cx + (r if k % 2 == 0 else 0.4 * r) * np.cos(np.pi / 2 + k * np.pi / 5 + turn),
            cy - (r if k % 2 == 0 else 0.4 * r) * np.sin(np.pi / 2 + k * np.pi / 5 + turn)) for k in range(10)]
    ImageDraw.Draw(im).polygon(pts, fill=(210, 35, 35))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
