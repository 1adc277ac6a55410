"""The in-memory rate limits (fmnist_core/ratelimit.py) and the teacher unlock built on them
(roles.try_teacher_password, roles.teacher_proof): a fake clock, so no test sleeps."""
from __future__ import annotations

import threading

import pytest

from fmnist_core import ratelimit, roles


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    rl = ratelimit.RateLimiter(rate_per_s=0.5, burst=3, clock=clock)
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("b")  # another key has its own bucket
    assert rl.wait_s("a") == pytest.approx(2.0)
    clock.t += 1.9
    assert not rl.allow("a")
    clock.t += 0.2
    assert rl.allow("a") and not rl.allow("a")
    clock.t += 100  # refills up to the burst, never past it
    assert sum(rl.allow("a") for _ in range(10)) == 3


def test_token_bucket_is_thread_safe_and_bounded():
    rl = ratelimit.RateLimiter(rate_per_s=1e-9, burst=100)
    got = []
    threads = [threading.Thread(target=lambda: got.extend(rl.allow("k") for _ in range(50))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == 100  # 400 tries, exactly the burst allowed: no token taken twice
    small = ratelimit.RateLimiter(rate_per_s=1, burst=1, max_keys=10)
    for i in range(1000):
        small.allow(f"fresh-{i}")
    assert len(small._buckets) == 10


def test_lockout_after_failures_says_the_wait():
    clock = Clock()
    lo = ratelimit.Lockout(max_failures=3, window_s=60, lock_s=300, clock=clock)
    for _ in range(2):
        lo.check("k")
        lo.failed("k")
    clock.t += 61  # failures older than the window are forgotten
    lo.failed("k")
    lo.failed("k")
    lo.check("k")
    lo.failed("k")
    with pytest.raises(ratelimit.RateLimited, match=r"try again in 5 minutes"):
        lo.check("k")
    clock.t += 250
    with pytest.raises(ratelimit.RateLimited, match=r"in 50 seconds"):
        lo.check("k")
    lo.check("other")
    clock.t += 51
    lo.check("k")


@pytest.fixture
def unlock(monkeypatch):
    """A class with a password and fresh limiters on a fake clock."""
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "correct horse")
    clock = Clock()
    monkeypatch.setattr(roles, "UNLOCK_RATE", ratelimit.RateLimiter(1 / 3, 5, clock=clock))
    monkeypatch.setattr(roles, "UNLOCK_BROWSER_LOCKOUT", ratelimit.Lockout(5, 600, 300, clock=clock))
    monkeypatch.setattr(roles, "UNLOCK_ADDRESS_LOCKOUT", ratelimit.Lockout(20, 600, 900, clock=clock))
    return clock


def test_fifty_wrong_passwords_in_a_row_are_refused_long_before_the_fiftieth(unlock):
    addr = roles.address_id("10.0.0.7")
    outcomes = []
    for i in range(50):
        try:
            outcomes.append(roles.try_teacher_password(f"guess{i}", "browser-1", addr))
        except roles.RateLimited as exc:
            outcomes.append(str(exc))
    assert outcomes[:5] == [False] * 5
    assert all(isinstance(o, str) and ("wait" in o or "again in" in o) for o in outcomes[5:])
    # even the right password is refused while locked out: a script cannot learn it from timing
    with pytest.raises(roles.RateLimited, match="Too many wrong tries"):
        roles.try_teacher_password("correct horse", "browser-1", addr)


def test_a_fresh_browser_on_the_same_address_is_still_limited(unlock):
    addr = roles.address_id("10.0.0.8")
    checked = 0
    for i in range(40):  # a new private window (a new browser id) for every guess
        unlock.t += 3.1  # slow enough for the token bucket
        try:
            roles.try_teacher_password("wrong", f"fresh-{i}", addr)
            checked += 1
        except roles.RateLimited as exc:
            assert "minutes" in str(exc)
    assert checked == 20  # the address's lockout took over
    other = roles.address_id("10.0.0.9")
    assert roles.try_teacher_password("correct horse", "teacher-browser", other)  # not everyone


def test_the_teacher_proof_expires_and_dies_with_a_password_change(unlock, monkeypatch):
    token = "t" * 32
    proof = roles.teacher_proof(token, now=1_000_000)
    assert roles.check_teacher_proof(token, proof, now=1_000_000 + 3600)
    assert not roles.check_teacher_proof(token, proof, now=1_000_000 + roles.TEACHER_PROOF_SECONDS + 1)
    assert not roles.check_teacher_proof("u" * 32, proof, now=1_000_000)  # copied to another browser
    expires, mac = proof.split(".")
    assert not roles.check_teacher_proof(token, f"{int(expires) + 86400}.{mac}", now=1_000_000)  # stretched
    assert roles.TEACHER_PROOF_SECONDS <= 12 * 3600
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "a new password")
    assert not roles.check_teacher_proof(token, proof, now=1_000_000 + 60)
    assert roles.check_teacher_proof(token, roles.teacher_proof(token, now=1_000_000), now=1_000_060)
    for junk in ("", "abc", "123.", ".abc", "12a.ff"):
        assert not roles.check_teacher_proof(token, junk, now=1_000_000)


def test_address_is_a_hash_not_the_ip():
    a = roles.address_id("192.168.1.20")
    assert a == roles.user_id("addr:192.168.1.20") and "192" not in a
    assert roles.address_id(None) == roles.address_id("") == ""
    assert roles.User("x", "y").address == ""
