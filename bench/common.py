"""Shared helpers of the benchmarks: timing with device synchronisation, peak memory, tables."""
import resource
import statistics
import time


def timeit(fn, sync, warmup=2, iters=5):
    """Median wall time of fn() in seconds, after `warmup` untimed calls; sync() before each clock."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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
