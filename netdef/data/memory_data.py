"""MemoryData: batches from arrays handed over from Python (pycaffe's set_input_arrays).

    layer { name: "data" type: "MemoryData" top: "data" top: "label"
      memory_data_param { batch_size: 10 channels: 3 height: 32 width: 32 } }

    net.set_input_arrays(data, labels)   # data (n, C, H, W), labels (n,) or (n, 1, 1, 1);
                                          # n a multiple of batch_size
Tops: data (batch_size, C, H, W) and label (batch_size,). Each forward delivers the next
batch_size rows, wrapping around at the end. The arrays are converted to the net's dtype (a
copy only when they are not already of it, C-contiguous). As in Caffe, transform_param does not
apply to arrays given this way. get_state()/set_state() give the position.
"""
import numpy as np

from ..errors import NetdefError, ShapeError
from ..core.layer import Layer
from ..layers import register_layer


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    exact_num_bottom = 0
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        mp = self.layer_param.memory_data_param
        self.batch_size, self.channels = int(mp.batch_size), int(mp.channels)
        self.height, self.width = int(mp.height), int(mp.width)
        if min(self.batch_size, self.channels, self.height, self.width) <= 0:
            raise self.error("memory_data_param: batch_size, channels, height and width must all be set "
                             f"and positive, got {self.batch_size}, {self.channels}, {self.height}, {self.width}")
        if self.layer_param.HasField("transform_param") and self.layer_param.transform_param.ListFields():
            raise self.error("transform_param does not apply to MemoryData (as in Caffe); transform the "
                             "arrays before set_input_arrays")
        self.data = self.labels = None
        self.pos = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        if len(top) > 1:
            top[1].reshape(self.batch_size)

    def set_input_arrays(self, data, labels):
        data = np.asarray(data)
        labels = np.asarray(labels)
        want = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != want:
            raise ShapeError(f"MemoryData: data has shape {data.shape}; expected (n, {', '.join(map(str, want))})",
                             layer=self.name)
        n = data.shape[0]
        if n == 0 or n % self.batch_size:
            raise ShapeError(f"MemoryData: {n} samples is not a positive multiple of batch_size {self.batch_size}",
                             layer=self.name)
        if labels.size != n or (labels.ndim > 1 and labels.shape[1:] != (1,) * (labels.ndim - 1)):
            raise ShapeError(f"MemoryData: labels have shape {labels.shape}; expected ({n},) or ({n}, 1, 1, 1)",
                             layer=self.name)
        self.data = np.ascontiguousarray(data, dtype=self.dtype)
        self.labels = np.ascontiguousarray(labels.reshape(n), dtype=self.dtype)
        self.pos = 0

    def set_batch_size(self, batch_size):
        """pycaffe's: change the batch size (the net must be reshaped afterwards)."""
        if int(batch_size) <= 0:
            raise self.error(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.pos = 0

    def forward(self, bottom, top):
        if self.data is None:
            raise NetdefError("MemoryData: no input arrays; call net.set_input_arrays(data, labels) first",
                              layer=self.name)
        n, b = self.data.shape[0], self.batch_size
        if n % b:
            raise ShapeError(f"MemoryData: {n} samples is not a multiple of batch_size {b}", layer=self.name)
        top[0].data[...] = self.backend.asarray(self.data[self.pos:self.pos + b], dtype=self.dtype)
        if len(top) > 1:
            top[1].data[...] = self.backend.asarray(self.labels[self.pos:self.pos + b], dtype=self.dtype)
        self.pos = (self.pos + b) % n

    def backward(self, top, propagate_down, bottom):
        pass

    def get_state(self):
        return {"pos": int(self.pos)}

    def set_state(self, state):
        self.pos = int(state["pos"])
