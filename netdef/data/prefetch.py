"""Prefetcher: reads the next batches in a background thread while the net computes.

A data source is described by one pure function, `produce(state) -> (batch, next_state)`:
the batch that starts at `state` (e.g. {"epoch": 3, "pos": 120, "seed": 7}) and the state of
the batch after it. All randomness of a batch (shuffle order, crops, mirrors) is derived from
the state, so the thread produces exactly the batches a synchronous reader would, and a
layer's position is just the state after the last batch it *consumed*: `get_state()` never
counts batches that were read ahead, and `reset(state)` drops them and goes on from `state`
(the solver's resume).

Errors raised by `produce` in the thread are re-raised by `get()`/`peek()` in the caller.
The thread is a daemon, holds no reference to the layer, and stops when the Prefetcher is
garbage collected, closed or reset. NETDEF_PREFETCH=0 in the environment (or depth 0) reads
synchronously, for debugging.
"""
import os
import queue
import threading
import weakref

DEFAULT_DEPTH = 3


def _default_depth():
    env = os.environ.get("NETDEF_PREFETCH")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            pass
    return DEFAULT_DEPTH


def _run(produce, q, stop, state):
    while not stop.is_set():
        try:
            batch, nxt = produce(state)
            item = (batch, nxt, None)
        except BaseException as e:  # delivered to the consumer, which re-raises it
            item = (None, state, e)
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                break
            except queue.Full:
                continue
        if item[2] is not None:
            return
        state = nxt


class Prefetcher:
    def __init__(self, produce, state, depth=None, name="netdef-prefetch"):
        self._produce = produce
        self.depth = _default_depth() if depth is None else max(0, int(depth))
        self.name = name
        self._state = state  # the state of the next batch get() returns
        self._peeked = None  # (batch, next_state) taken from the queue but not consumed
        self._error = None
        self._thread = None
        self._stop = None
        self._queue = None

    # ---- the thread ---------------------------------------------------------------------
    def _start(self):
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=_run, name=self.name, daemon=True,
                                        args=(self._produce, self._queue, self._stop, self._state))
        # Stop the thread when this object goes away (the thread holds no reference to it).
        self._finalizer = weakref.finalize(self, self._stop.set)
        self._thread.start()

    def _stop_thread(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._finalizer.detach()
        self._thread = self._stop = self._queue = None

    def _next(self):
        if self._error is not None:
            raise self._error
        if self.depth == 0:
            try:
                return self._produce(self._state)
            except BaseException as e:
                self._error = e
                raise
        if self._thread is None:
            self._start()
        while True:
            try:
                batch, nxt, err = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    self._error = RuntimeError(f"{self.name}: the prefetch thread died")
                    raise self._error from None
        if err is not None:
            self._error = err
            raise err
        return batch, nxt

    # ---- the consumer's side ------------------------------------------------------------
    def peek(self):
        """The next batch, without consuming it (a data layer's reshape at setup)."""
        if self._peeked is None:
            self._peeked = self._next()
        return self._peeked[0]

    def get(self):
        """The next batch; advances the state."""
        if self._peeked is not None:
            batch, nxt = self._peeked
            self._peeked = None
        else:
            batch, nxt = self._next()
        self._state = nxt
        return batch

    @property
    def state(self):
        """The state of the next batch get() will return (after the last one consumed)."""
        return self._state

    def reset(self, state):
        """Drop what was read ahead and go on from `state`."""
        self._stop_thread()
        self._peeked = None
        self._error = None
        self._state = state

    def close(self):
        self._stop_thread()
        self._peeked = None
