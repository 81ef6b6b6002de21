import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_terminal_summary(terminalreporter):
    import fuzzlib

    if not fuzzlib.STATS:
        return
    tried = sum(s[0] for s in fuzzlib.STATS.values())
    loaded = sum(s[1] for s in fuzzlib.STATS.values())
    crashes = sum(s[3] for s in fuzzlib.STATS.values())
    slow = max(fuzzlib.STATS.values(), key=lambda s: s[4][0])[4]
    tr = terminalreporter
    tr.section("fuzz")
    if os.environ.get("NETDEF_FUZZ_VERBOSE"):
        for name, (t, ld, rf, cr, _) in sorted(fuzzlib.STATS.items()):
            tr.write_line(f"{name}: {t} tried, {ld} loaded, {rf} refused with NetdefError, {cr} crashes")
    tr.write_line(f"{tried} cases tried in {len(fuzzlib.STATS)} fuzz tests: {loaded} loaded, "
                  f"{tried - loaded - crashes} refused with NetdefError, crashes: {crashes}; "
                  f"slowest case {slow[0]:.2f} s ({slow[1]})")
