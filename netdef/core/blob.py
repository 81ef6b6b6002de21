"""Blob: an N-D array of data and its gradient (diff), on one device, in one dtype; and the
shape arithmetic layers share (canonical axis indices, products of ranges of axes).

As in Caffe, a blob keeps a capacity: reshaping to a count it already holds reuses its memory,
so nets that are reshaped per input (FCN on images of varying size) do not reallocate.
`diff` is allocated on first use, so TEST-phase nets never pay for gradients.
"""
import math
import os

import numpy as np

from ..backend import get_backend
from ..errors import NetdefError, ShapeError

_MAX_AXES = 32
_limit = {"bytes": None}


def set_max_blob_bytes(nbytes):
    """Refuse any single blob above `nbytes` (None: only the device's available memory limits
    it). Also set by the environment variable NETDEF_MAX_BLOB_BYTES. Sizes are checked before
    anything is allocated, so a file declaring a huge shape costs nothing."""
    _limit["bytes"] = None if nbytes is None else int(nbytes)


def max_blob_bytes(backend):
    """(the most bytes one blob may take on `backend`, why): its available memory, or less if a
    budget is configured."""
    available = backend.available_memory()
    budget = _limit["bytes"]
    if budget is None and os.environ.get("NETDEF_MAX_BLOB_BYTES"):
        try:
            budget = int(float(os.environ["NETDEF_MAX_BLOB_BYTES"]))
        except ValueError:
            raise NetdefError("NETDEF_MAX_BLOB_BYTES must be a number of bytes, got "
                              f"{os.environ['NETDEF_MAX_BLOB_BYTES']!r}") from None
    if budget is not None and budget < available:
        return budget, "allowed per blob (NETDEF_MAX_BLOB_BYTES)"
    return available, "available"


def _check_shape(shape, name):
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape {shape!r} is not a sequence of integers", blob=name) from None
    if len(shape) > _MAX_AXES:
        raise ShapeError(f"shape {shape[:4]}... has {len(shape)} axes; at most {_MAX_AXES} are supported",
                         blob=name)
    if any(d < 0 for d in shape):
        raise ShapeError(f"shape {shape} has a negative dimension", blob=name)
    return shape


def canonical_axis(axis, shape, name=None):
    """`axis` of a blob of `shape` as an index in [0, len(shape)): -1 is the last axis, as
    Caffe's CanonicalAxisIndex. Outside -len(shape) <= axis < len(shape): a ShapeError naming
    the blob (`name`) and its shape."""
    n = len(shape)
    if not -n <= axis < n:
        raise ShapeError(f"axis {axis} is out of range for a blob of {n} axes (shape {tuple(shape)})",
                         blob=name)
    return axis + n if axis < 0 else axis


def count_range(shape, start=0, end=None, name=None):
    """The product of shape[start:end] (1 for an empty range), as Caffe's Blob::count(start,
    end); `end` None: to the last axis. Both are axis indices in [0, len(shape)]."""
    n = len(shape)
    end = n if end is None else end
    if not 0 <= start <= end <= n:
        raise ShapeError(f"axis range [{start}, {end}) is not within the {n} axes of shape {tuple(shape)}",
                         blob=name)
    return math.prod(shape[start:end])


class ShapeClock:
    """Counts the shape changes of the blobs that carry it (a Net gives one to all of its
    blobs), so that the Net can tell in one comparison whether any layer needs reshaping."""

    __slots__ = ("ticks",)

    def __init__(self):
        self.ticks = 0


class Blob:
    #: the ShapeClock this blob ticks on a real shape change (None: nobody watches)
    clock = None

    def __init__(self, shape=(), dtype=np.float32, backend=None, name=None):
        self.backend = backend or get_backend()
        self.xp = self.backend.xp
        self.dtype = np.dtype(dtype)
        self.name = name
        self._shape = ()
        self._data_buf = None
        self._diff_buf = None
        self._data = None
        self._diff = None
        self._shared_data = None  # a Blob whose data this one shows (Split, in-place views)
        self.reshape(*shape) if isinstance(shape, (tuple, list)) else self.reshape(shape)

    # ---- shape --------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        # A property, not Caffe's count(start, end): it is read in every kernel launch, where a
        # method call costs more than the product; ranges are count_range().
        return math.prod(self._shape)

    def count_range(self, start=0, end=None):
        """Product of shape[start:end] (Caffe's count(start, end) / count(start))."""
        return count_range(self._shape, start, end, self.name)

    def canonical_axis(self, axis):
        """`axis` in [0, num_axes) (negatives count from the end); a ShapeError naming this
        blob and its shape when out of range (Caffe's CanonicalAxisIndex)."""
        return canonical_axis(axis, self._shape, self.name)

    @property
    def num_axes(self):
        return len(self._shape)

    def _legacy(self, i):
        return self._shape[i] if len(self._shape) > i else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def check_bytes(self, shape):
        """The element count of `shape`, after checking that a blob of it may be allocated
        (no int64 overflow, not above max_blob_bytes); raises ShapeError otherwise."""
        count = 1
        for d in shape:
            count *= d
        nbytes = count * self.dtype.itemsize
        if count > np.iinfo(np.int64).max // max(self.dtype.itemsize, 1):
            raise ShapeError(f"shape {shape} overflows: more than 2**63 bytes", blob=self.name)
        if nbytes > self._capacity_bytes():
            limit, what = max_blob_bytes(self.backend)
            if nbytes > limit:
                raise ShapeError(f"shape {shape} needs {nbytes / 2**30:.3g} GiB, more than the "
                                 f"{limit / 2**30:.3g} GiB {what}", blob=self.name)
        return count

    def _capacity_bytes(self):
        return 0 if self._data_buf is None else self._data_buf.nbytes

    def reshape(self, *shape):
        """Reshape; the contents are undefined afterwards unless the count is unchanged."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape = _check_shape(shape, self.name)
        count = self.check_bytes(shape)
        if shape != self._shape and self.clock is not None:
            self.clock.ticks += 1
        self._shape = shape
        self._shared_data = None
        if self._data_buf is None or self._data_buf.size < count:
            self._data_buf = self.xp.zeros(max(count, 1), dtype=self.dtype)
            self._diff_buf = None
        self._data = self._data_buf[:count].reshape(shape)
        if self._diff_buf is not None:
            if self._diff_buf.size < count:
                self._diff_buf = None
                self._diff = None
            else:
                self._diff = self._diff_buf[:count].reshape(shape)

    # ---- data and diff ------------------------------------------------------------------
    @property
    def data(self):
        if self._shared_data is not None:
            return self._shared_data.data
        return self._data

    @data.setter
    def data(self, value):
        self._assign(self.data, value, "data")

    @property
    def diff(self):
        if self._diff is None or self._diff.shape != self._shape:
            if self._diff_buf is None or self._diff_buf.size < self.count:
                capacity = self.count if self._data_buf is None else self._data_buf.size
                self._diff_buf = self.xp.zeros(max(capacity, 1), dtype=self.dtype)
            self._diff = self._diff_buf[:self.count].reshape(self._shape)
        return self._diff

    @diff.setter
    def diff(self, value):
        self._assign(self.diff, value, "diff")

    def use_diff_buffer(self, buf):
        """Keep the diff in the front of `buf` (a flat array of at least count elements),
        possibly shared with other blobs' diffs (Net.share_diffs); contents undefined."""
        self._diff_buf = buf
        self._diff = buf[:self.count].reshape(self._shape)

    def drop_diff(self):
        """Forget the diff's memory (a new one, zeros, is made on next use)."""
        self._diff_buf = None
        self._diff = None

    @property
    def has_diff(self):
        return self._diff_buf is not None

    def _assign(self, target, value, what):
        value = self.backend.asarray(value) if not isinstance(value, self.xp.ndarray) else value
        if tuple(value.shape) != self._shape:
            raise ShapeError(f"cannot assign {what} of shape {tuple(value.shape)} to a blob of shape "
                             f"{self._shape}; call reshape() first", blob=self.name)
        target[...] = value

    def share_data(self, other, release=False):
        """Show `other`'s data as this blob's (Caffe's ShareData); undone by reshape().
        release: also free this blob's own data memory (params shared for good, as a test
        net's with the train net's: Caffe drops the memory it replaces too)."""
        if other.count != self.count:
            raise ShapeError(f"cannot share data of {other.shape} with {self.shape}", blob=self.name)
        self._shared_data = other
        if release:
            self._data_buf = None
            self._data = None

    # ---- helpers ------------------------------------------------------------------------
    def to_numpy(self, diff=False):
        return self.backend.to_numpy(self.diff if diff else self.data)

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self._shape}, dtype={self.dtype.name}, {self.backend.name})"
