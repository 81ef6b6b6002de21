"""HDF5Data: rows of HDF5 datasets, one dataset per top (needs h5py).

    layer { name: "data" type: "HDF5Data" top: "data" top: "label"
      hdf5_data_param { source: "train_h5.txt" batch_size: 64 shuffle: true } }

source: a text file listing .h5 files, one per line (relative to the list file's directory, or
to the working directory when they exist only there). Each file holds one dataset per top,
named like the top, all with the same number of rows; top i gets (batch_size, *rows' shape of
dataset i), as floats. Rows are read file by file; shuffle draws, per epoch, a new order of the
files and of the rows within each (Caffe's scheme). Files are loaded whole, one at a time, in a
background thread. Without h5py installed the layer is an error saying so.
"""
import os

import numpy as np

from ..errors import NetdefError
from ..layers import register_layer
from .base import EpochSampler, PrefetchingDataLayer, draw_seed
from .seg_data import _read_list
from .transform import base_dir_of, layer_error, resolve_path


def _h5py(error):
    try:
        import h5py
    except ImportError:
        raise error("HDF5Data needs the h5py package, which is not installed: pip install h5py") from None
    return h5py


class FileBlockSampler(EpochSampler):
    """An epoch visits the files in a (shuffled) order and the rows of each in a (shuffled) order."""

    def __init__(self, rows, shuffle, seed):
        super().__init__(sum(rows), shuffle, seed)
        self.starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self.rows = rows

    def order(self, seed, epoch):
        if not self.shuffle:
            return None
        key, perm = self._cache
        if key != (seed, epoch):
            rng = np.random.default_rng([seed, epoch, 0x5EED])
            parts = [self.starts[f] + rng.permutation(self.rows[f]) for f in rng.permutation(len(self.rows))]
            perm = np.concatenate(parts)
            self._cache = ((seed, epoch), perm)
        return perm


class HDF5Reader:
    def __init__(self, files, names, sampler, batch_size, h5py):
        self.files, self.names, self.sampler = files, names, sampler
        self.batch_size, self.h5py = batch_size, h5py
        self._loaded = (None, None)

    def initial_state(self):
        return self.sampler.initial_state()

    def _file(self, f):
        idx, arrays = self._loaded
        if idx != f:
            path = self.files[f]
            try:
                with self.h5py.File(path, "r") as h:
                    arrays = [np.asarray(h[n], dtype=np.float32) for n in self.names]
            except (OSError, KeyError) as e:
                raise NetdefError(f"cannot read HDF5 file: {e}", file=path) from None
            self._loaded = (f, arrays)
        return arrays

    def produce(self, state):
        picks, nxt = self.sampler.take(state, self.batch_size)
        starts = self.sampler.starts
        out = [[] for _ in self.names]
        for index, _ in picks:
            f = int(np.searchsorted(starts, index, side="right") - 1)
            arrays = self._file(f)
            for k, a in enumerate(arrays):
                out[k].append(a[index - starts[f]])
        return [np.stack(rows) for rows in out], nxt


@register_layer("HDF5Data")
class HDF5DataLayer(PrefetchingDataLayer):
    min_top = 1

    def make_reader(self, top):
        err = layer_error(self)
        h5py = _h5py(err)
        hp = self.layer_param.hdf5_data_param
        if not hp.source:
            raise err("hdf5_data_param.source (a list of .h5 files) is not set")
        if hp.batch_size < 1:
            raise err("hdf5_data_param.batch_size must be >= 1")
        src = resolve_path(hp.source, base_dir_of(self))
        files = [resolve_path(ln, os.path.dirname(src)) for ln in _read_list(src)]
        if not files:
            raise NetdefError("the list of HDF5 files is empty", file=src)
        names = list(self.layer_param.top)
        rows, shapes = [], None
        for path in files:
            if not os.path.isfile(path):
                raise NetdefError(f"HDF5 file listed in {src} not found", file=path)
            try:
                with h5py.File(path, "r") as h:
                    missing = [n for n in names if n not in h]
                    if missing:
                        raise NetdefError(f"no dataset named {', '.join(missing)} (datasets: "
                                          f"{', '.join(h.keys())}); datasets are named like the tops", file=path)
                    sh = [tuple(h[n].shape) for n in names]
            except OSError as e:
                raise NetdefError(f"cannot read HDF5 file: {e}", file=path) from None
            if any(len(s) == 0 for s in sh) or len({s[0] for s in sh}) != 1:
                raise NetdefError(f"datasets {names} have shapes {sh}; they need the same number of rows",
                                  file=path)
            if shapes is not None and [s[1:] for s in sh] != [s[1:] for s in shapes]:
                raise NetdefError(f"rows have shapes {[s[1:] for s in sh]}, the first file's "
                                  f"{[s[1:] for s in shapes]}", file=path)
            shapes = shapes or sh
            rows.append(sh[0][0])
        sampler = FileBlockSampler(rows, hp.shuffle, draw_seed(self))
        return HDF5Reader(files, names, sampler, int(hp.batch_size), h5py)
