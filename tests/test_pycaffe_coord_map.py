"""pycaffe's coord_map API (crop, coord_map_from_to, conv_params, compose, inverse) on NetSpec
tops: FCN's crop offsets must come out as the published ones (models/README.md)."""
import numpy as np
import pytest

from netdef import NetdefError, coord_map
from netdef.coord_map import (AxisMismatchException, UndefinedMapException, compose, conv_params,
                              coord_map_from_to, crop, inverse)
from netdef.net_spec import L, NetSpec, P


def _fcn(skips):
    """FCN-32s/16s/8s geometry at one channel, with the crops made by coord_map.crop."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 64, 64]))
    bottom = n.data
    for stage, convs in enumerate([2, 2, 3, 3, 3], 1):
        for k in range(1, convs + 1):
            conv = L.Convolution(bottom, num_output=1, kernel_size=3, pad=100 if (stage, k) == (1, 1) else 1)
            setattr(n, f"conv{stage}_{k}", conv)
            bottom = L.ReLU(conv, in_place=True)
            setattr(n, f"relu{stage}_{k}", bottom)
        setattr(n, f"pool{stage}", L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2))
        bottom = getattr(n, f"pool{stage}")
    n.fc6 = L.Convolution(n.pool5, num_output=1, kernel_size=7)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = L.Convolution(n.drop6, num_output=1, kernel_size=1)
    n.score_fr = L.Convolution(n.fc7, num_output=2, kernel_size=1)

    def up(b, f):
        return L.Deconvolution(b, convolution_param=dict(num_output=2, kernel_size=2 * f, stride=f,
                                                         bias_term=False))
    if not skips:
        n.upscore = up(n.score_fr, 32)
        n.score = crop(n.upscore, n.data)
    else:
        n.upscore2 = up(n.score_fr, 2)
        n.score_pool4 = L.Convolution(n.pool4, num_output=2, kernel_size=1)
        n.score_pool4c = crop(n.score_pool4, n.upscore2)
        n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
        if skips == 1:
            n.upscore16 = up(n.fuse_pool4, 16)
            n.score = crop(n.upscore16, n.data)
        else:
            n.upscore_pool4 = up(n.fuse_pool4, 2)
            n.score_pool3 = L.Convolution(n.pool3, num_output=2, kernel_size=1)
            n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
            n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
            n.upscore8 = up(n.fuse_pool3, 8)
            n.score = crop(n.upscore8, n.data)
    return n


@pytest.mark.parametrize("skips,offsets", [(0, [19]), (1, [5, 27]), (2, [5, 9, 31])])
def test_crop_gives_the_published_fcn_offsets(skips, offsets):
    net = _fcn(skips).to_proto()
    crops = [l for l in net.layer if l.type == "Crop"]
    assert [list(l.crop_param.offset) for l in crops] == [[o] for o in offsets]  # one value, as published
    assert all(l.crop_param.axis == 2 for l in crops)
    # the crop layers' bottoms: the blob to crop, then the reference
    assert list(crops[-1].bottom)[1] == "data"
    # netdef's own coordinate maps agree on the prototxt
    for l in crops:
        del l.crop_param.offset[:]
    coord_map.fill_crop_offsets(net)
    assert [l.crop_param.offset[0] for l in net.layer if l.type == "Crop"] == offsets


def test_maps_by_hand():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=[3, 5], stride=2, pad=[1, 0], dilation=2)
    axis, stride, ks, pad = conv_params(n.conv.fn)
    assert axis == 1 and list(stride) == [2] and list(ks) == [5, 9] and list(pad) == [1, 0]
    ax, a, b = coordmap = coord_map.coord_map(n.conv.fn)
    np.testing.assert_allclose(a, [0.5])
    np.testing.assert_allclose(b, [(1 - 2) / 2, (0 - 4) / 2])
    ax2, a2, b2 = compose(coordmap, inverse(coordmap))
    np.testing.assert_allclose(a2, 1)
    np.testing.assert_allclose(b2, 0)
    ax3, a3, b3 = coord_map_from_to(n.conv, n.data)  # conv pixel x sits at 2x + (-1, -4)... inverted
    np.testing.assert_allclose(a3, [2])
    np.testing.assert_allclose(b3, [1, 4])
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


def test_unmappable_and_mismatched_tops():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.ip = L.InnerProduct(n.data, num_output=4)
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=1, stride=2)
    with pytest.raises(UndefinedMapException, match="InnerProduct"):
        coord_map.coord_map(n.ip.fn)
    with pytest.raises(RuntimeError, match="InnerProduct"):
        coord_map_from_to(n.ip, n.conv)
    with pytest.raises(AssertionError, match="scale mismatch"):
        crop(n.conv, n.data)
    n.big = L.Convolution(n.data, num_output=1, kernel_size=3, pad=2)
    with pytest.raises(NetdefError, match="negative offset"):
        crop(n.data, n.big)
