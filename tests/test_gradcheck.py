"""The gradient checker enforces the Layer contract, not only the math: param gradients are
added to diff, bottom gradients are written. Each toy layer below has the right derivative
but breaks one half of the contract; the checker must reject it."""

import numpy as np
import pytest

from gradcheck import check_gradients

TOY_LAYERS = '''
import netdef


class _ChannelScale(netdef.Layer):
    """top = w[c] * bottom with a learnable w per channel; subclasses vary backward."""

    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].data.shape[1])
        self.blobs[0].data[...] = 1.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[None, :, None, None] * bottom[0].data

    def dw(self, top, bottom):
        return (top[0].diff * bottom[0].data).sum(axis=(0, 2, 3))

    def dx(self, top):
        return self.blobs[0].data[None, :, None, None] * top[0].diff


class Correct(_ChannelScale):
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += self.dw(top, bottom)
        if propagate_down[0]:
            bottom[0].diff[...] = self.dx(top)


class AssignsParamDiff(_ChannelScale):
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] = self.dw(top, bottom)  # the bug: = instead of +=
        if propagate_down[0]:
            bottom[0].diff[...] = self.dx(top)


class AddsToBottomDiff(_ChannelScale):
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += self.dw(top, bottom)
        if propagate_down[0]:
            bottom[0].diff[...] += self.dx(top)  # the bug: += instead of =


class SkipsBottomElements(_ChannelScale):
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += self.dw(top, bottom)
        if propagate_down[0]:
            bottom[0].diff[:, 1:] = self.dx(top)[:, 1:]  # the bug: channel 0 never written
'''


@pytest.fixture
def module(python_module):
    return python_module(TOY_LAYERS, "toy_layers")


def _param(module, layer):
    return f'type: "Python" python_param {{ module: "{module}" layer: "{layer}" }}'


X = np.random.default_rng(3).standard_normal((2, 3, 2, 2))


def test_correct_layer_passes(module):
    assert check_gradients(_param(module, "Correct"), [X]) == X.size + X.shape[1]


def test_param_diff_assigned_instead_of_added_is_rejected(module):
    with pytest.raises(AssertionError, match=r"param\[0\]"):
        check_gradients(_param(module, "AssignsParamDiff"), [X])


def test_bottom_diff_added_instead_of_written_is_rejected(module):
    with pytest.raises(AssertionError, match=r"bottom\[0\].*analytic nan"):
        check_gradients(_param(module, "AddsToBottomDiff"), [X])


def test_bottom_diff_not_fully_written_is_rejected(module):
    with pytest.raises(AssertionError, match=r"bottom\[0\].*analytic nan"):
        check_gradients(_param(module, "SkipsBottomElements"), [X])
