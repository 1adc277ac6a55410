"""Who may do what: owners, the teacher, and the class limits, checked here in the core.

  a user      a display name the student picks plus a secret token the browser keeps; runs
              record the name and `owner_id`, a hash of the token (the token itself is never
              stored, so reading the store does not let anyone act as someone else)
  the teacher unlocked with the password from FMNIST_TEACHER_PASSWORD or
              .streamlit/secrets.toml (`teacher_password = "..."`), compared in constant time
              and never logged; tries are rate-limited and locked out per browser and per
              address (`try_teacher_password`); the proof a browser keeps expires after a school
              day and dies with a password change. With no password configured there is no
              class: the single user of a laptop is the teacher and needs no login (that is why
              `make run` listens on 127.0.0.1 only and `make class` refuses to start without one).
  limits      set by the teacher for everyone, kept in the run store (so every server and
              worker of a class sees the same): concurrent trainings, runs waiting in all, and
              per student (and per address) the runs waiting or running at once, parameters
              per model, epochs and seconds per run, estimated memory per job and estimated
              minutes per run (the price: cost.py)

This module only decides (authorize, require_teacher, check_limits); submit.py acts. Pages
hide buttons a user may not press, but that is for comfort: every action that changes a run
(stop, delete, hide) and every launch goes through here.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from .data import PROJECT_ROOT
from .errors import WorkbenchError
from .ratelimit import Lockout, RateLimited, RateLimiter

SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"
NAME = re.compile(r"[\w .'-]{1,40}")


class PermissionDenied(WorkbenchError):
    """An action this user may not take (someone else's run, a teacher-only control)."""


@dataclass(frozen=True)
class User:
    name: str          # what the class sees on runs and the leaderboard
    id: str            # sha256 of the browser's secret token: what runs record as owner_id
    teacher: bool = False
    address: str = ""  # user_id("addr:" + the client's IP) when the server knows it, else "":
                       # limits per address hold when a student opens a fresh private window

    def owns(self, run: dict[str, Any]) -> bool:
        return bool(run.get("owner_id")) and hmac.compare_digest(run["owner_id"], self.id)


def new_token() -> str:
    return secrets.token_hex(16)


def user_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not NAME.fullmatch(name):
        raise WorkbenchError("a name is 1 to 40 letters, digits, spaces, dots, apostrophes or dashes")
    return name


def single_user() -> User:
    """The laptop's one user (the CLI's too): the teacher when no class is configured."""
    return User(os.environ.get("USER") or "me", user_id("single-user"), teacher=not class_mode())


def operator() -> User:
    """Whoever runs the command line on the server: it acts as the teacher would."""
    return User(os.environ.get("USER") or "cli", user_id("single-user"), teacher=True)


# --- the teacher's password --------------------------------------------------------------------

def teacher_password() -> str | None:
    pw = os.environ.get("FMNIST_TEACHER_PASSWORD")
    if pw:
        return pw
    try:
        import tomllib
        with open(SECRETS_FILE, "rb") as f:
            return tomllib.load(f).get("teacher_password") or None
    except (OSError, ValueError):
        return None


def class_mode() -> bool:
    """A class server: a teacher password is configured, so users are students by default."""
    return teacher_password() is not None


def check_teacher_password(given: str) -> bool:
    pw = teacher_password()
    return pw is not None and hmac.compare_digest(given.encode(), pw.encode())


def address_id(ip: str | None) -> str:
    """What User.address holds for a client address: a hash, so the store never keeps IPs."""
    return user_id("addr:" + ip) if ip else ""


# the unlock: a typo or two goes through at once, a script gets one try every few seconds, and
# repeated failures lock the browser out for minutes. An address (a school's NAT may put a whole
# class behind one) gets a higher bar, so one prankster does not lock the teacher out at once.
UNLOCK_RATE = RateLimiter(rate_per_s=1 / 3, burst=5)
UNLOCK_BROWSER_LOCKOUT = Lockout(max_failures=5, window_s=600, lock_s=300)
UNLOCK_ADDRESS_LOCKOUT = Lockout(max_failures=20, window_s=600, lock_s=900)
TEACHER_PROOF_SECONDS = 12 * 3600  # a school day: a borrowed laptop is not a teacher tomorrow


def try_teacher_password(given: str, browser: str, address: str = "") -> bool:
    """Check a teacher password typed in a browser (its user id) from an address (address_id,
    "" when unknown); raises RateLimited, with the wait in words, instead of checking while
    this browser or address has tried too often."""
    keyed = [(UNLOCK_BROWSER_LOCKOUT, f"browser:{browser}")]
    if address:
        keyed.append((UNLOCK_ADDRESS_LOCKOUT, f"addr:{address}"))
    for lockout, key in keyed:
        lockout.check(key, "try the teacher password again")
    allowed = [UNLOCK_RATE.allow(key) for _, key in keyed]  # every bucket pays, none short-circuits
    if not all(allowed):
        wait = max(UNLOCK_RATE.wait_s(key) for _, key in keyed)
        raise RateLimited(f"Too many tries at once: wait {max(1, round(wait))} seconds and type it again.")
    ok = check_teacher_password(given)
    for lockout, key in keyed:
        lockout.succeeded(key) if ok else lockout.failed(key)
    return ok


def teacher_proof(token: str, now: float | None = None) -> str | None:
    """What a browser keeps after the unlock: its expiry and an HMAC of its token and that
    expiry under the password (None without a password). A copied cookie fails on another
    browser, a changed password fails every old proof, and every proof ends within a day."""
    pw = teacher_password()
    if not pw:
        return None
    expires = int((now if now is not None else time.time()) + TEACHER_PROOF_SECONDS)
    mac = hmac.new(pw.encode(), f"{token}|{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def check_teacher_proof(token: str, proof: str, now: float | None = None) -> bool:
    pw = teacher_password()
    expires, _, mac = str(proof).partition(".")
    if not pw or not expires.isdigit() or not mac:
        return False
    now = now if now is not None else time.time()
    if not now < int(expires) <= now + TEACHER_PROOF_SECONDS + 60:  # expired, or from a longer-lived past
        return False
    want = hmac.new(pw.encode(), f"{token}|{expires}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, want)


# --- who may touch a run ------------------------------------------------------------------------

def authorize(user: User, action: str, run: dict[str, Any]) -> None:
    """Owner or teacher may stop, delete or hide a run; everyone may look at every run."""
    if user.teacher or user.owns(run):
        return
    owner = run.get("owner") or "someone else"
    raise PermissionDenied(f"only {owner} (who launched it) or the teacher can {action} this run")


def require_teacher(user: User, what: str) -> None:
    if not user.teacher:
        raise PermissionDenied(f"only the teacher can {what}")


# --- the class limits -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassSettings:
    max_concurrent: int = 1            # trainings at once on this server: on 2 cores a second one
                                       # only slows both (each waits for the other's core)
    max_active_per_student: int = 2    # runs waiting or running per student, and per address (a
                                       # private window is a new student, not a new computer)
    max_waiting_total: int = 60        # waiting runs of the whole class: 30 students x 2
    max_parameters: int = 5_000_000    # per model: the largest preset is ~1.7 M
    max_epochs: int = 30               # mlp-best, the longest preset, trains 30
    max_seconds: float = 900.0         # per run: a 15-minute cap keeps the queue moving in a lesson
    max_job_mb: int = 3000             # estimated peak memory per job (cost.py): the presets need
                                       # 1.2-2.4 GB; a batch-60,000 CNN asks for tens of GB
    max_est_minutes: float = 20.0      # estimated minutes per run on this server (cost.py)

    def validate(self) -> "ClassSettings":
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1:
                raise WorkbenchError(f"{f.name.replace('_', ' ')} must be a number >= 1, got {v!r}")
        return self


SETTINGS_TAG = "fmnist.class_settings"


def class_settings() -> ClassSettings:
    """The teacher's settings, from the run store (defaults until the teacher changes one)."""
    from . import runs
    s = runs.store()
    raw = s.client.get_experiment(s.experiment_id).tags.get(SETTINGS_TAG)
    try:
        known = {f.name for f in fields(ClassSettings)}
        return ClassSettings(**{k: v for k, v in json.loads(raw).items() if k in known}).validate()
    except (TypeError, ValueError, WorkbenchError):
        return ClassSettings()


def set_class_settings(user: User, **changes: Any) -> ClassSettings:
    from . import runs
    require_teacher(user, "change the class settings")
    new = ClassSettings(**{**asdict(class_settings()), **changes}).validate()
    s = runs.store()
    s.client.set_experiment_tag(s.experiment_id, SETTINGS_TAG, json.dumps(asdict(new)))
    return new


def check_spec_limits(spec, st: ClassSettings, price=None) -> None:
    """Refuse, with the reason, a spec over the class limits on the model, the epochs and its
    price (what the trainer re-checks before it trains). `spec` is a RunSpec."""
    n = spec.parameters()  # counted from the plan, never allocated
    if n > st.max_parameters:
        raise PermissionDenied(f"this model has {n:,} parameters; the class limit is {st.max_parameters:,} "
                               "(make it narrower or shallower)")
    if spec.train.epochs > st.max_epochs:
        raise PermissionDenied(f"{spec.train.epochs} epochs asked; the class limit is {st.max_epochs}")
    if price is None:
        return
    from .cost import format_mb
    if price.peak_mb > st.max_job_mb:
        raise PermissionDenied(f"this run would need about {format_mb(price.peak_mb)} of memory; the class "
                               f"limit is {format_mb(st.max_job_mb)} per job (a smaller batch size or "
                               "narrower layers need less)")
    if price.seconds > st.max_est_minutes * 60:
        raise PermissionDenied(f"this run would take about {price.seconds / 60:.0f} minutes on this server; "
                               f"the class limit is {st.max_est_minutes:g} minutes (fewer epochs, fewer "
                               "training images or a smaller model)")


def check_limits(user: User, spec, price, active: list[dict[str, Any]], st: ClassSettings,
                 budget_mb: float) -> None:
    """Every limit a launch must pass, given the runs waiting or running now (`active`). The
    teacher has no class limits, only the server's own (its memory budget). Called by
    submit.submit under the submit lock, so counting and creating are one step."""
    from .cost import format_mb
    if not user.teacher:
        check_spec_limits(spec, st, price)
    if price.peak_mb > budget_mb:
        raise PermissionDenied(f"this run would need about {format_mb(price.peak_mb)} of memory; this "
                               f"server runs jobs within {format_mb(budget_mb)} (a smaller batch size "
                               "or narrower layers need less)")
    if user.teacher:
        return
    mine = [r for r in active if user.owns(r)]
    if len(mine) >= st.max_active_per_student:
        raise PermissionDenied(f"you already have {len(mine)} run(s) waiting or running; the class limit "
                               f"is {st.max_active_per_student}: wait for one to finish or stop one")
    if user.address:
        here = [r for r in active if (r["status_info"].get("owner_addr") or "") == user.address]
        if len(here) >= st.max_active_per_student:
            raise PermissionDenied(f"this computer already has {len(here)} run(s) waiting or running; the "
                                   f"class limit is {st.max_active_per_student} per computer")
    queued = [r for r in active if r["status"] == "queued"]
    if len(queued) >= st.max_waiting_total:
        raise PermissionDenied(f"the class queue is full ({len(queued)} runs waiting, the limit is "
                               f"{st.max_waiting_total}): try again when some have started")


def capped(spec, st: ClassSettings, teacher: bool):
    """The spec to run: its training time capped at the class limit (the run stops early,
    keeping its best epoch) rather than refused."""
    from dataclasses import replace
    if teacher or (spec.train.max_seconds and spec.train.max_seconds <= st.max_seconds):
        return spec
    return replace(spec, train=replace(spec.train, max_seconds=float(st.max_seconds)))
