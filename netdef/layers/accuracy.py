"""Accuracy: the fraction of labelled positions whose label is among the top_k scores.

accuracy_param { top_k (1)  axis (1)  ignore_label }
bottom[0]: scores seen as (outer, C, inner) around axis; bottom[1]: one label per (outer, inner)
position (count outer * inner). Labels are floats truncated to integers; a label that is neither
ignore_label nor in [0, C) is an error.
forward:  a position with label l (not ignored) is a hit when #{c : x[o, c, t] >= x[o, l, t]} - 1
          < top_k (classes tied with the true score count as better, as in Caffe);
          top[0] = hits / labelled positions (0 when there are none);
          top[1] (optional) = per class c: hits among positions labelled c / their number
          (0 for a class that does not occur).
backward: none (Caffe defines none; the layer never asks for it).
shape:    top[0] = () (a scalar), top[1] = (C,)
"""
from ..core.layer import Layer
from . import register_layer
from ._labels import bad_label_error, check_labels

#: pixels per partial sum of the per-class counts (the partial sums are then added by the backend)
CHUNK = 4096


@register_layer("Accuracy")
class AccuracyLayer(Layer):
    exact_num_bottom = 2
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = int(p.top_k)
        self.has_ignore = p.HasField("ignore_label")
        self.ignore_label = int(p.ignore_label)
        self.buffers = None

    def allow_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        self.outer, self.C, self.inner = check_labels(self, bottom[0], bottom[1],
                                                      self.layer_param.accuracy_param.axis)
        n = self.outer * self.inner
        if self.top_k < 1 or self.top_k > self.C:
            raise self.error(f"top_k {self.top_k} must be between 1 and the number of classes "
                             f"{self.C} (score shape {bottom[0].shape})")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.C,))
        if self.buffers is None or self.buffers[0].shape[1] != n:
            xp = self.xp
            self.buffers = (xp.empty((3, n), dtype=self.dtype), xp.empty(n, dtype=xp.int64))

    def forward(self, bottom, top):
        k = self.kernels("accuracy")
        xp = self.xp
        px, cls = self.buffers
        n = self.outer * self.inner
        labels = bottom[1].data
        k.accuracy_forward(n, bottom[0].data, labels, px[0], px[1], px[2], cls, self.C, self.inner,
                           self.top_k, int(self.has_ignore), self.ignore_label)
        hits, count, bad = (float(v) for v in self.backend.to_numpy(px.sum(axis=1)))
        if bad > 0:
            raise bad_label_error(self, bad, px[2], bottom[0], bottom[1], self.has_ignore,
                                  self.ignore_label, self.C)
        top[0].data[...] = hits / count if count > 0 else 0.0
        if len(top) > 1:
            chunks = max(1, -(-n // CHUNK))
            total = xp.empty((self.C, chunks), dtype=self.dtype)
            good = xp.empty((self.C, chunks), dtype=self.dtype)
            k.accuracy_per_class(self.C * chunks, px[0], cls, total, good, n, CHUNK, chunks)
            total, good = total.sum(axis=1), good.sum(axis=1)
            top[1].data[...] = xp.where(total > 0, good / xp.maximum(total, 1), 0)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("Accuracy has no backward pass")
