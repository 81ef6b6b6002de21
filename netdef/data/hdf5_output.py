"""HDF5Output: writes its two bottoms to an HDF5 file, as datasets `data` and `label` (needs
h5py: pip install 'netdef[hdf5]').

    layer { name: "out" type: "HDF5Output" bottom: "fc8" bottom: "label"
      hdf5_output_param { file_name: "features.h5" } }

setup creates the file (truncating an existing one; a relative file_name is relative to the
working directory, as in Caffe). Every forward appends its batch: after k forwards of N rows,
`data` is (k N, C, H, W) and `label` (k N, C', H', W'). Rows are the bottoms' rows, float as
the net computes (float32 by default); bottoms of fewer than 4 axes are written with trailing
axes of 1, (N, C) -> (N, C, 1, 1), as Caffe writes its legacy 4-D blobs. Backward does nothing
(no gradient reaches the bottoms). The file is flushed after every batch and closed by
Net.close() / layer.close().

Difference from Caffe: Caffe writes the datasets with H5LTmake_dataset, which fails when they
exist, so its layer dies on the second forward; netdef appends, so a test run of many batches
leaves all of them in the file.
Shapes: bottom[0] (N, ...) and bottom[1] (N, ...) with the same N and a fixed row shape each; no tops.
"""
import os

import numpy as np

from ..errors import NetdefError
from ..core.layer import Layer
from ..layers import register_layer

DATASETS = ("data", "label")


def _h5py(error):
    try:
        import h5py
    except ImportError:
        raise error("HDF5Output needs h5py, which is not installed: pip install 'netdef[hdf5]'") from None
    return h5py


def _row_shape(shape):
    """A bottom's row shape as Caffe writes it: (C, H, W), padded with 1s to 3 axes."""
    rows = tuple(shape[1:])
    return rows + (1,) * (3 - len(rows)) if len(rows) < 3 else rows


@register_layer("HDF5Output")
class HDF5OutputLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 0
    #: the open h5py.File (None before setup and after close)
    file = None

    def setup(self, bottom, top):
        hp = self.layer_param.hdf5_output_param
        if not hp.file_name:
            raise self.error("hdf5_output_param.file_name (the .h5 file to write) is not set")
        h5py = _h5py(self.error)
        self.file_name = os.path.abspath(os.path.expanduser(hp.file_name))
        try:
            self.file = h5py.File(self.file_name, "w")
        except (OSError, ValueError) as e:
            raise NetdefError(f"cannot create the HDF5 file: {e}", file=self.file_name, layer=self.name) from None
        self.rows = 0

    def reshape(self, bottom, top):
        data, label = bottom
        if not data.shape or not label.shape or data.shape[0] != label.shape[0]:
            raise self.shape_error(f"data {data.shape} and label {label.shape} need the same number "
                                   "of rows (axis 0)")
        for name, blob in zip(DATASETS, bottom, strict=True):
            if name in self.file and self.file[name].shape[1:] != _row_shape(blob.shape):
                raise self.shape_error(f"bottom '{name}' now has rows of {blob.shape[1:]}, but the "
                                       f"file's '{name}' holds rows of {self.file[name].shape[1:]}")

    def forward(self, bottom, top):
        if self.file is None:
            raise self.error("the layer was closed; it writes no more")
        n = bottom[0].shape[0]
        try:
            for name, blob in zip(DATASETS, bottom, strict=True):
                rows = np.asarray(blob.to_numpy()).reshape((n,) + _row_shape(blob.shape))
                if name not in self.file:
                    self.file.create_dataset(name, data=rows, maxshape=(None,) + rows.shape[1:],
                                             chunks=True)
                else:
                    ds = self.file[name]
                    ds.resize(self.rows + n, axis=0)
                    ds[self.rows:] = rows
            self.file.flush()
        except (OSError, ValueError) as e:
            raise NetdefError(f"cannot write to the HDF5 file: {e}", file=self.file_name, layer=self.name) from None
        self.rows += n

    def backward(self, top, propagate_down, bottom):
        pass

    def allow_backward(self, bottom_index):
        return False

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
