"""Diff sharing by lifetime (Net.share_diffs): the planning rule and the pool that holds it.

During backward a blob's diff is alive from the first backward step that touches it (the layer
that writes it, or reads it as a top) to the last one; two blobs whose lives do not overlap can
keep their diffs in the same memory. diff_lifetimes() finds each shareable blob's life;
DiffPool.plan() then takes the blobs in order of their first step and puts each into a buffer
whose blobs are all dead by then: the smallest such buffer that is big enough, else the biggest
(grown to fit), else a new one. In backward order blobs mostly grow (FCN's diffs go from the
scores to conv1's), so growing the biggest free buffer wastes least.

Not shared: the blobs the caller keeps (net inputs, outputs, loss tops) and any blob whose diff
no layer writes, since it must read as zeros.
"""


def diff_lifetimes(steps, keep):
    """{blob: (first, last) step} for the blobs that may share diff memory.

    steps: the backward pass in order, one (tops, [(bottom, written), ...]) per layer that runs
    backward (written: whether it writes that bottom's diff); keep: ids of blobs not to share."""
    span, written = {}, set()
    for step, (tops, bottoms) in enumerate(steps):
        touched = list(tops)
        for blob, writes in bottoms:
            if writes:
                touched.append(blob)
                written.add(id(blob))
        for blob in touched:
            first, _ = span.get(blob, (step, step))
            span[blob] = (first, step)
    return {b: t for b, t in span.items() if id(b) not in keep and id(b) in written}


class DiffPool:
    """The shared diff buffers of one Net and the plan that assigns its blobs to them. A plan
    is made for one set of shapes and kept until they change; a new plan reuses the buffers it
    can, so a net reshaped per batch does not allocate on every iteration."""

    def __init__(self, backend, dtype):
        self.backend = backend
        self.dtype = dtype
        #: the buffers (flat arrays) the planned blobs keep their diffs in
        self.buffers = []
        #: the blobs whose diffs are in the pool
        self.blobs = []
        self._key = None  # the shapes the plan was made for

    def plan(self, key, lifetimes):
        """Assign the blobs of `lifetimes()` ({blob: (first, last)}) to buffers, unless the
        plan for `key` (the net's blob shapes) is already in place."""
        if key == self._key:
            return
        groups = []  # [size, last step, blobs]
        lives = lifetimes()
        for blob, (first, last) in sorted(lives.items(), key=lambda kv: kv[1][0]):
            free = [g for g in groups if g[1] < first]
            big = [g for g in free if g[0] >= blob.count]
            if big:
                group = min(big, key=lambda g: g[0])
            elif free:
                group = max(free, key=lambda g: g[0])
            else:
                group = [0, 0, []]
                groups.append(group)
            group[0] = max(group[0], blob.count)
            group[1] = last
            group[2].append(blob)
        spare, pool = list(self.buffers), []
        for size, _, blobs in sorted(groups, key=lambda g: -g[0]):
            fits = [i for i, b in enumerate(spare) if b.size >= size]
            if fits:
                buf = spare.pop(min(fits, key=lambda i: spare[i].size))
            else:
                buf = self.backend.xp.empty(max(size, 1), dtype=self.dtype)
            pool.append(buf)
            for blob in blobs:
                blob.use_diff_buffer(buf)
        self.buffers = pool
        self.blobs = list(lives)
        self._key = key

    def release(self):
        """Give every planned blob a diff of its own again (fresh zeros on first use) and free
        the buffers."""
        for blob in self.blobs:
            blob.drop_diff()
        self.buffers = []
        self.blobs = []
        self._key = None
