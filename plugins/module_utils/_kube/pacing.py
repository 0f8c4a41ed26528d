# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gentle writes: how many may be in flight and when the next may start.

A long series of writes (the sweep of 100,000 Jobs) must not make the apiserver slow for everyone else.
``Pacer`` decides, from what the writes themselves see:

- **Latency.** Writes are judged a round at a time (one round = as many writes as the limit allows at
  once). The baseline is the lowest round median seen. A round whose median is more than ``tolerance``
  times the baseline (and at least ``slack_s`` above it) means the apiserver is busier than it was: the
  limit shrinks to three quarters. Otherwise it grows by one, up to ``ceiling`` (additive increase,
  multiplicative decrease, as TCP's congestion control).
- **429 Too Many Requests** (API Priority and Fairness rejected the request): the limit halves, no
  write starts before the server's ``Retry-After`` has passed, and for ``cool_down_s`` the limit grows
  back at most to one less than where the 429 came (the seats this client's priority level has are
  learnt, not probed again every round: each probe costs every write a Retry-After).
- **A rate cap** (``rate`` writes per second), for operators who want a hard limit whatever the latency.

Threads call ``acquire`` before a write and ``release`` after it. The clock and the sleep are injected,
so the decisions are unit-tested without a cluster. Standard library only (the in-cluster runner uses it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

# The defaults, and why (documented with the sweep options):
# - start at 2 writes in flight: the first rounds measure the baseline at a load that is gentle anyway;
# - tolerate twice the baseline latency: what other clients are meant to feel at most while we write;
# - 5 ms of slack: below that a "doubling" of a 2 ms write is noise (scheduling, GC), not load.
DEFAULT_START = 2
DEFAULT_TOLERANCE = 2.0
DEFAULT_SLACK_S = 0.005
# A 429 without Retry-After waits this long; a Retry-After longer than the cap waits the cap.
DEFAULT_RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 30.0
DEFAULT_COOL_DOWN_S = 30.0


class Pacer:
    """Adaptive concurrency with a ceiling, 429 pauses and an optional rate cap. Thread-safe."""

    def __init__(self, ceiling=10, rate=None, start=DEFAULT_START, tolerance=DEFAULT_TOLERANCE,
                 slack_s=DEFAULT_SLACK_S, cool_down_s=DEFAULT_COOL_DOWN_S, clock=time.monotonic):
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = int(ceiling)
        self.rate = float(rate) if rate else None
        self.tolerance = tolerance
        self.slack_s = slack_s
        self.clock = clock
        self.limit = float(max(1, min(start, self.ceiling)))
        self.in_flight = 0
        self.paused_until = 0.0
        self.next_start = 0.0
        self.baseline = None
        self.cool_down_s = cool_down_s
        self._cap, self._cap_until = self.ceiling, 0.0
        self._round = []
        self._cond = threading.Condition()
        self.stats = {"writes": 0, "throttled": 0, "server_errors": 0, "throttled_wait_s": 0.0, "decreases": 0,
                      "increases": 0,
                      "limit_min": int(self.limit), "limit_max": int(self.limit)}

    # ---------------------------------------------------------------- decisions (under the lock)

    def _wait_needed(self, now):
        """Seconds until a write may start (0: now)."""
        if self.in_flight >= int(self.limit):
            return None   # until a release
        return max(self.paused_until - now, self.next_start - now if self.rate else 0.0, 0.0)

    def _set_limit(self, value):
        self.limit = max(1.0, min(float(self.ceiling), value))
        self.stats["limit_min"] = min(self.stats["limit_min"], int(self.limit))
        self.stats["limit_max"] = max(self.stats["limit_max"], int(self.limit))
        self._cond.notify_all()

    def _end_round(self):
        samples = sorted(self._round)
        self._round = []
        median = samples[len(samples) // 2]
        if self.baseline is None or median < self.baseline:
            self.baseline = median
        if median > max(self.baseline * self.tolerance, self.baseline + self.slack_s):
            self.stats["decreases"] += 1
            self._set_limit(self.limit * 0.75)
        else:
            cap = self._cap if self.clock() < self._cap_until else self.ceiling
            if self.limit < cap:
                self.stats["increases"] += 1
                self._set_limit(min(self.limit + 1, cap))

    # ---------------------------------------------------------------- the interface

    def acquire(self, stop=None, tick=None, poll_s=0.5):
        """Block until a write may start; count it in flight. Returns False (nothing counted) as soon as
        ``stop()`` says so. ``tick()`` is called while waiting (progress reports)."""
        with self._cond:
            while True:
                if stop is not None and stop():
                    return False
                now = self.clock()
                wait = self._wait_needed(now)
                if wait == 0.0:
                    self.in_flight += 1
                    if self.rate:
                        self.next_start = max(now, self.next_start) + 1.0 / self.rate
                    return True
                self._cond.wait(poll_s if wait is None else min(wait, poll_s))
                if tick is not None:
                    tick()

    def release(self, latency_s, throttled_for=None, server_error=False):
        """A write ended. ``latency_s``: how long it took. ``throttled_for``: it got 429 with this Retry-After
        (None: it was not throttled; 0: no Retry-After was sent). ``server_error``: it got a 5xx or no answer,
        which is backed off from as a 429 without Retry-After, and counted apart."""
        with self._cond:
            self.in_flight -= 1
            self.stats["writes"] += 1
            if throttled_for is not None or server_error:
                wait = DEFAULT_RETRY_AFTER_S if server_error else min(throttled_for or DEFAULT_RETRY_AFTER_S,
                                                                      MAX_RETRY_AFTER_S)
                self.stats["server_errors" if server_error else "throttled"] += 1
                now = self.clock()
                if now >= self.paused_until:
                    # A new pause: the limit halves once, however many writes in flight are refused with it.
                    self.stats["decreases"] += 1
                    self._cap, self._cap_until = max(1, int(self.limit) - 1), now + self.cool_down_s
                    self._set_limit(self.limit / 2)
                until = now + wait
                if until > self.paused_until:
                    self.stats["throttled_wait_s"] += until - max(self.paused_until, now)
                    self.paused_until = until
                self._round = []
            else:
                self._round.append(latency_s)
                if len(self._round) >= max(1, int(self.limit)):
                    self._end_round()
            self._cond.notify_all()

    def snapshot(self):
        with self._cond:
            out = dict(self.stats, limit=int(self.limit), ceiling=self.ceiling, rate_cap=self.rate,
                       baseline_ms=round(self.baseline * 1000, 1) if self.baseline is not None else None)
        out["throttled_wait_s"] = round(out["throttled_wait_s"], 1)
        return out
