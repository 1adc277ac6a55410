"""Real servers for the tests of the class server (PostgreSQL, `mlflow server`, a Ray head node).

Each helper is a context manager that starts its component on 127.0.0.1 on a free port, in a
temporary folder of its own, and stops it (and only it) afterwards, also when the test fails.
Nothing here touches a server it did not start: processes are found by the process group /
session that the helper created for them, never by name (`ray stop` and `pkill` are not used).

Quirks these helpers take care of (measured with mlflow 3.17.2, ray 2.60.0, PostgreSQL 15,
SQLAlchemy 2.1.9):

* PostgreSQL refuses to run as root: `initdb`/`pg_ctl` run as user `postgres` (`runuser`),
  in a folder owned by postgres. pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700),
  which postgres cannot enter, so the cluster gets its own short folder under /tmp; only its log
  is copied into the folder given by the test.
* SQLAlchemy 2.1 maps `postgresql://` to the psycopg (3) driver, which is not installed;
  `mlflow server` then dies with "No module named 'psycopg'". `sqlalchemy_uri()` turns the DSN
  into `postgresql+psycopg2://...` (psycopg2-binary is the pinned driver).
* `mlflow server` starts a job runner and seven huey consumers (GenAI jobs) unless
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false; they also leave SQLite files in /dev/shm.
  Its security middleware accepts Host 127.0.0.1/localhost (any port) and private IPs by
  default: no --allowed-hosts is needed on loopback (a LAN host name would need one). /health
  is exempt from the Host check, so a healthy /health does not prove the API accepts the Host.
* `ray start` replaces 127.0.0.1 by the machine's routable IP and binds the GCS on all
  interfaces. With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (in the environment of `ray start`
  *and* of every driver, before `import ray`) the node IP is 127.0.0.1 and everything binds to
  loopback only; a driver without it rewrites "127.0.0.1:PORT" to the LAN IP and hangs in
  ray.init. RAY_CLIENT_ENV holds what a driver process needs.
* `ray stop` stops every Ray process of the machine (it matches process names), so it is never
  used: the cluster runs in a session of its own (`ray start` under setsid); Ray's daemons keep
  that session and its workers only change their process group, so the session id finds them all.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent          # the venv's bin/: mlflow and ray live next to python

# what a Ray driver's environment needs (set before `import ray`) to talk to ray_cluster()
RAY_CLIENT_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# no telemetry, no GenAI job runner: nothing here may try to reach the internet
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                     "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                     "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes, found by group or session, never by name ------------------------------------

def _procs() -> list[tuple[int, str, int, int]]:
    """(pid, state, pgid, sid) of every process, from /proc/PID/stat."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        out.append((int(d), fields[0], int(fields[2]), int(fields[3])))
    return out


def members(*, pgid: int | None = None, sid: int | None = None) -> list[int]:
    """Live (not zombie) processes of a process group or of a session."""
    return [pid for pid, state, g, s in _procs()
            if state != "Z" and ((pgid is not None and g == pgid) or (sid is not None and s == sid))]


def _kill_and_wait(sig: int, *, pgid: int | None = None, sid: int | None = None,
                   timeout: float = 10.0) -> bool:
    """Send sig to every member of the group / session; True once none is left (zombies,
    which PID 1 reaps in its own time, count as gone)."""
    for pid in members(pgid=pgid, sid=sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.time() + timeout
    while members(pgid=pgid, sid=sid):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group that proc leads, SIGKILL what is left after grace seconds."""
    if grace <= 0 or not _kill_and_wait(signal.SIGTERM, pgid=proc.pid, timeout=grace):
        _kill_and_wait(signal.SIGKILL, pgid=proc.pid, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --- PostgreSQL ----------------------------------------------------------------------------

def postgres_missing() -> str | None:
    """Why postgres_server() cannot run here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not shutil.which(tool):
            return f"{tool} not on PATH (PostgreSQL is not installed)"
    if os.geteuid() != 0:
        return "postgres_server runs initdb as user postgres through runuser, which needs root"
    try:
        import pwd
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no user postgres"
    return None


def _as_postgres(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd="/")


def sqlalchemy_uri(dsn: str) -> str:
    """postgresql://... -> postgresql+psycopg2://... (SQLAlchemy 2.1 would pick psycopg 3)."""
    return "postgresql+psycopg2://" + dsn.split("://", 1)[1] if dsn.startswith("postgresql://") else dsn


def _stop_postgres(data: Path) -> None:
    """`pg_ctl stop -m fast`; if that fails, SIGQUIT (immediate shutdown) and then SIGKILL the
    postmaster named in postmaster.pid, so the folder is never deleted under a live server."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return                                      # never started, or already stopped
    try:
        _as_postgres("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
    except (subprocess.SubprocessError, OSError):
        pass
    for sig in (signal.SIGQUIT, signal.SIGKILL):   # still there: immediate shutdown, then kill
        if not _is_postmaster(pid, data):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.time() + 10
        while _is_postmaster(pid, data) and time.time() < deadline:
            time.sleep(0.1)


def _is_postmaster(pid: int, data: Path) -> bool:
    """pid is a live (not zombie) postgres serving data (not a process that reused the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z" and str(data) in cmdline


@contextlib.contextmanager
def postgres_server(tmpdir: Path | None = None, dbname: str = "mlflow", timeout: float = 60.0):
    """Yield the DSN postgresql://postgres@127.0.0.1:PORT/DBNAME of a fresh PostgreSQL cluster
    (trust auth, TCP on 127.0.0.1 only, unix socket in its own folder, fsync off). The cluster
    is stopped (`pg_ctl stop -m fast`) and its folder deleted afterwards; its log is copied to
    tmpdir/postgres.log when tmpdir is given."""
    import pwd
    pw = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))      # short: the socket path is < 108
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data, log = base / "data", base / "postgres.log"
    port = free_port()
    try:
        r = _as_postgres("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--locale=C", "--no-sync", timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        r = _as_postgres("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout)),
                         "-o", opts, "start", timeout=timeout + 10)
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed ({r.returncode}): {r.stdout[-800:]}{r.stderr[-800:]}"
                               f"\n{_tail(log)}")
        createdb = Path(shutil.which("initdb")).resolve().parent / "createdb"
        if createdb.exists():
            r = _as_postgres(str(createdb), "-h", str(base), "-p", str(port), "-U", "postgres", dbname)
            if r.returncode:
                raise RuntimeError(f"createdb failed: {r.stderr[-1500:]}")
        else:                                       # no client tools: psycopg2 over TCP
            import psycopg2
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{dbname}"')
            conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
    finally:
        _stop_postgres(data)                        # whatever got started, even half-way
        if tmpdir is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(log, Path(tmpdir) / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


# --- mlflow server ---------------------------------------------------------------------------

def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class MlflowServer:
    """`mlflow server` on 127.0.0.1:port; start() / stop() / kill() as often as wanted, always
    on the same port with the same stores (a restarted server is the same server to a client)."""

    def __init__(self, backend_uri: str, artifacts_dir: Path, port: int | None = None,
                 log: Path | None = None, workers: int = 1, extra_args: tuple[str, ...] = ()):
        self.backend_uri = sqlalchemy_uri(backend_uri)
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log) if log else self.artifacts_dir.parent / f"mlflow-server-{self.port}.log"
        self.workers = workers
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.start_seconds: list[float] = []        # how long each start() took to be healthy

    def command(self) -> list[str]:
        return [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend_uri,
                "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
                *self.extra_args]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90.0) -> str:
        if self.running:
            raise RuntimeError("mlflow server is already running")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(self.log, "ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd="/",
                                         env={**os.environ, **MLFLOW_SERVER_ENV})
        deadline = t0 + timeout
        while not _http_ok(f"{self.url}/health"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            if time.time() > deadline:
                self.stop(grace=0)
                raise RuntimeError(f"mlflow server not healthy within {timeout:.0f} s:\n{_tail(self.log)}")
            time.sleep(0.1)
        self.start_seconds.append(time.time() - t0)
        return self.url

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group (the CLI, uvicorn and its workers), SIGKILL after
        grace seconds; grace=0 kills at once (a crash)."""
        if self.proc is not None:
            _stop_group(self.proc, grace)
            self.proc = None

    def kill(self) -> None:
        self.stop(grace=0)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts_dir: Path, **kw):
    """Yield (url, handle) of a healthy `mlflow server --serve-artifacts` (artifact URIs are
    mlflow-artifacts:/...); handle.stop()/kill()/start() restart it on the same port. Stopped
    afterwards, whatever the test did to it."""
    server = MlflowServer(backend_uri, artifacts_dir, **kw)
    try:
        server.start()
        yield server.url, server
    finally:
        server.stop(grace=5)


# --- Ray -------------------------------------------------------------------------------------

@contextlib.contextmanager
def ray_cluster(num_cpus: int = 2, timeout: float = 120.0, log: Path | None = None):
    """Yield the address 127.0.0.1:PORT of a fresh Ray head node (`ray start --head`, no
    dashboard, no usage stats, loopback only, temp dir /tmp/rayXXXXXXXX). A driver needs
    RAY_CLIENT_ENV in its environment before `import ray`. Afterwards every process of the
    cluster's session is killed (what `ray stop --force` does, but for this cluster only) and
    the temp dir removed."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")     # unix socket paths must stay short
    port = free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--num-cpus", str(num_cpus), "--port", str(port),
           "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd="/",
                            env={**os.environ, **RAY_CLIENT_ENV})
    sid = proc.pid                                   # setsid: the session id is the child's pid
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ray start did not finish within {timeout:.0f} s") from None
        if log is not None:
            Path(log).write_text(out)
        if proc.returncode:
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{out[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_and_wait(signal.SIGKILL, sid=sid, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        shutil.rmtree(temp, ignore_errors=True)
