"""The base of the data layers that read from disk: a reader produces batches in a background
thread (netdef.data.prefetch), the layer copies each into its tops.

A reader walks its samples epoch by epoch. Its position is a small JSON-able dict
    {"epoch": e, "pos": p, "seed": s, "size": n}
(sample p of epoch e of n; the seed fixes every epoch's shuffle order and each sample's random
crop/mirror/scale). `get_state()` returns it for the batch the layer will deliver next, and
`set_state(state)` goes on from there: the solver stores it in its snapshots, so a resumed run
sees exactly the batches an uninterrupted one would.

Data-parallel training (netdef/solver/distributed.py): the train nets' readers of N ranks share
one global order. Each batch is a block of the global stream; rank r reads blocks r, r + N,
r + 2N, ... (EpochSampler.shard), so the ranks' reads are disjoint, together they are the
single-process stream, and one epoch is still one pass over the data. The state stays the
global position of the next group of N blocks, the same on every rank, so a snapshot of N ranks
resumes on M. Test nets are not sharded (rank 0 tests on all the data).

When a batch's shape differs from the tops' (images of different sizes with batch_size 1, as
FCN trains on VOC), forward reshapes the tops; the Net sees the change (its blobs' ShapeClock) and reshapes the
layers after this one before running them.
"""
import numpy as np

from ..errors import NetdefError
from ..core.netdef_pb2 import TRAIN
from ..core.layer import Layer
from .prefetch import Prefetcher
from .transform import layer_error

SEED_RANGE = 2**31


class EpochSampler:
    """Which sample comes at each (epoch, pos): in file order, or in a permutation of the
    n samples drawn per epoch from (seed, epoch). The seed travels in the state."""

    def __init__(self, n, shuffle, seed):
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self._cache = (None, None)
        self.rank, self.ranks = 0, 1

    def shard(self, rank, ranks):
        """Read only this rank's blocks of the global stream (see the module docstring)."""
        if not 0 <= rank < ranks:
            raise NetdefError(f"shard: rank {rank} outside [0, {ranks})")
        self.rank, self.ranks = int(rank), int(ranks)

    def order(self, seed, epoch):
        if not self.shuffle:
            return None
        key, perm = self._cache
        if key != (seed, epoch):
            perm = np.random.default_rng([seed, epoch, 0x5EED]).permutation(self.n)
            self._cache = ((seed, epoch), perm)
        return perm

    def take(self, state, count):
        """[(index, rng), ...] for `count` samples from `state`, and the state after them;
        rng is the generator of that sample's random transformation."""
        seed, n = int(state["seed"]), max(self.n, 1)
        start = int(state["epoch"]) * n + int(state["pos"])  # in the global stream
        out = []
        for g in range(start + self.rank * count, start + (self.rank + 1) * count):
            epoch, pos = divmod(g, n)
            perm = self.order(seed, epoch)
            index = pos if perm is None else int(perm[pos])
            out.append((index, np.random.default_rng([seed, epoch, pos, 1])))
        epoch, pos = divmod(start + self.ranks * count, n)
        return out, dict(state, epoch=epoch, pos=pos)

    def initial_state(self, pos=0):
        return {"epoch": 0, "pos": int(pos) % max(self.n, 1), "seed": self.seed, "size": self.n}


def draw_seed(layer, given=None):
    """A layer's data seed: the one the prototxt gives, else one drawn from the backend's host
    generator (seeded by the solver's random_seed / netdef.set_random_seed)."""
    if given is not None:
        try:
            return int(given)
        except (TypeError, ValueError):
            raise layer_error(layer)(f"seed must be an integer, got {given!r}") from None
    return int(layer.backend.host_rng.integers(0, SEED_RANGE))


class PrefetchingDataLayer(Layer):
    """Subclasses implement make_reader() -> an object with produce(state) -> (list of arrays,
    next_state), initial_state() and a `sampler` (EpochSampler)."""

    exact_num_bottom = 0
    prefetch_depth = None  # None: netdef.data.prefetch's default (NETDEF_PREFETCH overrides)

    def setup(self, bottom, top):
        self.reader = self.make_reader(top)
        if self.phase == TRAIN:
            from ..solver.parallel import solver_count, solver_rank

            if solver_count() > 1:
                self.reader.sampler.shard(solver_rank(), solver_count())
        self.prefetcher = Prefetcher(self.reader.produce, self.reader.initial_state(),
                                     depth=self.prefetch_depth, name=f"netdef-data-{self.name}")

    def make_reader(self, top):
        raise NotImplementedError

    def _wrap(self, e):
        if isinstance(e, NetdefError) and e.layer is None:
            e.layer = self.name
            e.args = (e._format(),)
        return e

    def reshape(self, bottom, top):
        if all(t.shape for t in top):
            return
        try:
            batch = self.prefetcher.peek()
        except NetdefError as e:
            raise self._wrap(e) from None
        for t, arr in zip(top, batch):
            t.reshape(arr.shape)

    def forward(self, bottom, top):
        try:
            batch = self.prefetcher.get()
        except NetdefError as e:
            raise self._wrap(e) from None
        for t, arr in zip(top, batch):
            if t.shape != arr.shape:
                t.reshape(arr.shape)
            t.data[...] = self.backend.asarray(arr, dtype=self.dtype)

    def backward(self, top, propagate_down, bottom):
        pass

    # ---- resume -------------------------------------------------------------------------
    def get_state(self):
        """The position of the next batch: a small JSON-able dict (see the module docstring)."""
        return dict(self.prefetcher.state)

    def set_state(self, state):
        """Go on from a state get_state() returned (the batches read ahead are dropped)."""
        err = layer_error(self)
        if not isinstance(state, dict) or not {"epoch", "pos", "seed"} <= set(state):
            raise err(f"set_state: expected a dict with epoch, pos and seed, got {state!r}")
        n = self.reader.sampler.n
        if state.get("size", n) != n:
            raise err(f"set_state: the state is for a source of {state['size']} samples, this one "
                      f"has {n} (did the list change?)")
        if not 0 <= int(state["pos"]) < max(n, 1):
            raise err(f"set_state: position {state['pos']} out of range for {n} samples")
        self.prefetcher.reset({"epoch": int(state["epoch"]), "pos": int(state["pos"]),
                               "seed": int(state["seed"]), "size": n})

    def close(self):
        """Stop the prefetch thread (it also stops when the layer is garbage collected)."""
        self.prefetcher.close()
