"""Shared helpers of the benchmarks: timing with device synchronisation, peak memory, tables,
and a check that no other process was using the CPUs while we timed (Load)."""
import os
import resource
import statistics
import time


def timeit(fn, sync, warmup=2, iters=5, clean=True, max_extra=None):
    """Median wall time of fn() in seconds, after `warmup` untimed calls; sync() before each clock.

    With clean=True an iteration during which other processes took CPU time (more than a tick or
    two, from /proc) is repeated, up to `max_extra` (default 2 x iters) extra iterations, so that
    helpers running tests on a shared 2-core machine do not end up in the figures; STATS counts
    the iterations dropped and those kept despite contention."""
    for _ in range(warmup):
        fn()
    sync()
    times, dirty = [], []
    extra = 2 * iters if max_extra is None else max_extra
    hz = os.sysconf("SC_CLK_TCK") if clean else 1
    while len(times) < iters:
        j0 = _cpu_jiffies() if clean else None
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        j1 = _cpu_jiffies() if clean else None
        if j0 is not None and j1 is not None:
            other = (j1[0] - j0[0]) - (j1[1] - j0[1])
            if other > 2 + 0.02 * dt * hz * (os.cpu_count() or 1):
                STATS["dropped"] += 1
                dirty.append(dt)
                if len(dirty) <= extra:
                    continue
                STATS["kept_dirty"] += 1
        times.append(dt)
    return statistics.median(times)


STATS = {"dropped": 0, "kept_dirty": 0}


def _status_gib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def peak_rss_gib():
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over the
    parent's peak into a subprocess)."""
    v = _status_gib("VmHWM")
    return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def try_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cpu_jiffies():
    """(jiffies all CPUs were busy, jiffies of this process and its reaped children) from
    /proc, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        # this process and its waited-for children (bench/fcn8s.py runs each case in one)
        return sum(v) - v[3] - v[4], sum(int(t) for t in own[11:15])
    except (OSError, ValueError, IndexError):
        return None


class Load:
    """Share of the machine's CPUs that *other* processes used between start() and stop():
    timings taken while it is above a few percent are not worth comparing."""

    def __init__(self):
        self.start()

    def start(self):
        self.t0, self.j0 = time.perf_counter(), _cpu_jiffies()

    def stop(self):
        j1 = _cpu_jiffies()
        if self.j0 is None or j1 is None:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        wall = (time.perf_counter() - self.t0) * hz * (os.cpu_count() or 1)
        return max(0.0, ((j1[0] - self.j0[0]) - (j1[1] - self.j0[1])) / max(wall, 1e-9))

    def wait_quiet(self, below=0.03, timeout=900.0):
        """Wait (up to `timeout` s) until other processes use < `below` of the CPUs over 2 s."""
        t_end = time.perf_counter() + timeout
        while time.perf_counter() < t_end:
            self.start()
            time.sleep(2.0)
            if (self.stop() or 0.0) < below:
                break
        self.start()

    def note(self):
        other = self.stop()
        return "" if other is None else f"other processes used {100 * other:.0f}% of the CPUs meanwhile"
