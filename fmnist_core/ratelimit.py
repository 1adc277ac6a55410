"""Rate limits in memory: a token bucket per key, and a lockout after repeated failures.

  RateLimiter   `allow(key)`: at most `burst` at once, refilled at `rate_per_s`; for anything
                a browser can repeat cheaply (the teacher unlock, a cheap job per session)
  Lockout       `check(key)` / `failed(key)` / `succeeded(key)`: after `max_failures` failures
                within `window_s` a key is locked for `lock_s`, and the refusal says how long

Keys are whatever the caller picks ("browser:<id>", "addr:<hash>"): a caller that limits by
several keys asks each one. Both are thread-safe (Streamlit runs every session on its own
thread) and hold at most `max_keys` keys, dropping the least recently seen, so a stream of
fresh keys cannot grow the server's memory. Left out on purpose: persistence and sharing
between processes (a restart forgets; one dashboard process serves a class).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

from .errors import WorkbenchError


class RateLimited(WorkbenchError):
    """Too many tries: the message says how long to wait."""


def _wait_words(seconds: float) -> str:
    if seconds < 90:
        s = max(1, math.ceil(seconds))
        return f"{s} second{'s' if s != 1 else ''}"
    m = math.ceil(seconds / 60)
    return f"{m} minute{'s' if m != 1 else ''}"


class RateLimiter:
    """A token bucket per key: `burst` tries at once, then one every 1/rate_per_s seconds."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_keys >= 1")
        self.rate, self.burst, self.max_keys, self._clock = float(rate_per_s), int(burst), int(max_keys), clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) * self.rate)

    def allow(self, key: str) -> bool:
        """Take one token for `key`; False (and nothing taken) when its bucket is empty."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(key, now)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)  # a forgotten key starts with a full bucket
            return ok

    def wait_s(self, key: str) -> float:
        """Seconds until `key` has a token again (0 when it has one now)."""
        with self._lock:
            tokens = self._tokens(key, self._clock())
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class Lockout:
    """After `max_failures` failures of a key within `window_s`, refuse it for `lock_s`."""

    def __init__(self, max_failures: int, window_s: float, lock_s: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.lock_s = int(max_failures), float(window_s), float(lock_s)
        self.max_keys, self._clock = int(max_keys), clock
        self._state: OrderedDict[str, tuple[list[float], float]] = OrderedDict()  # key -> (failures, locked until)
        self._lock = threading.Lock()

    def locked_for(self, key: str) -> float:
        """Seconds this key stays locked (0 when it may try)."""
        with self._lock:
            _, until = self._state.get(key, ([], 0.0))
            return max(0.0, until - self._clock())

    def check(self, key: str, what: str = "try again") -> None:
        """Raise RateLimited, with the wait in words, while `key` is locked."""
        left = self.locked_for(key)
        if left > 0:
            raise RateLimited(f"Too many wrong tries: {what} in {_wait_words(left)}.")

    def failed(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            fails, until = self._state.get(key, ([], 0.0))
            fails = [t for t in fails if now - t < self.window_s] + [now]
            if len(fails) >= self.max_failures:
                fails, until = [], now + self.lock_s
            self._state[key] = (fails, until)
            self._state.move_to_end(key)
            while len(self._state) > self.max_keys:
                self._state.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)
