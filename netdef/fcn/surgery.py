"""Net surgery: turn classifiers into fully convolutional segmenters.

convolutionalize   InnerProduct layers become Convolutions whose kernel covers the spatial
                   extent of their input (the first) or 1x1 (the later ones); weights of shape
                   (N, C*H*W) are reshaped to (N, C, H, W). At the training size the scores are
                   unchanged; on larger inputs the net yields a score map.
atrous             removes the stride of the downsampling layers past a chosen output stride
                   (8 or 16): each such layer gets stride 1, and every later layer with a kernel
                   is dilated by the accumulated factor (convolutions through `dilation`, pad
                   scaled alike; poolings, which have no dilation, through an equally wide window
                   k' = (k - 1) f + 1), so every receptive field is kept and the output is denser.
transplant         copies params between nets by layer name where the element counts agree.
bilinear           sets Deconvolution weights to bilinear upsampling kernels (per channel).
"""
import numpy as np

from ..core import netdef_pb2 as pb
from ..pycaffe.coord_map import conv_geometry, pool_geometry
from ..errors import NetdefError
from ..core.fillers import filler_values

log = __import__("logging").getLogger("netdef")


def convolutionalize(net, layers=None):
    """(NetParameter, weights NetParameter) of the fully convolutional form of `net` (a Net).

    layers: names of the InnerProduct layers to convert (default: all of them)."""
    from ..core.net import Net

    if not isinstance(net, Net):
        raise TypeError("convolutionalize takes a netdef.Net")
    out = pb.NetParameter()
    out.CopyFrom(_strip_splits(net.param))
    names = [l.name for l in out.layer if l.type == "InnerProduct"] if layers is None else list(layers)
    converted = {}
    for lp in out.layer:
        if lp.name not in names:
            continue
        if lp.type != "InnerProduct":
            raise NetdefError(f"'{lp.name}' is a {lp.type}, not an InnerProduct", layer=lp.name)
        ip = lp.inner_product_param
        if ip.axis != 1 or ip.transpose:
            raise NetdefError("only InnerProduct with axis 1 and transpose false can be convolutionalized",
                              layer=lp.name)
        shape = net.blobs[net.bottom_names[lp.name][0]].shape
        if len(shape) == 2:
            kh = kw = 1
        elif len(shape) == 4:
            kh, kw = shape[2], shape[3]
        else:
            raise NetdefError(f"bottom shape {shape} is neither (N, C) nor (N, C, H, W)", layer=lp.name)
        lp.type = "Convolution"
        cp = lp.convolution_param
        cp.num_output = ip.num_output
        cp.bias_term = ip.bias_term
        if kh == kw:
            cp.kernel_size.append(kh)
        else:
            cp.kernel_h, cp.kernel_w = kh, kw
        if ip.HasField("weight_filler"):
            cp.weight_filler.CopyFrom(ip.weight_filler)
        if ip.HasField("bias_filler"):
            cp.bias_filler.CopyFrom(ip.bias_filler)
        lp.ClearField("inner_product_param")
        converted[lp.name] = (shape[1] if len(shape) > 1 else 1, kh, kw)
    missing = set(names) - {l.name for l in out.layer}
    if missing:
        raise NetdefError(f"no layers named {sorted(missing)} in the net")
    weights = pb.NetParameter(name=out.name)
    from ..core.proto import blob_to_proto

    for name, layer in net.layer_dict.items():
        if not layer.blobs:
            continue
        lp = weights.layer.add(name=name, type=layer.type if name not in converted else "Convolution")
        for i, blob in enumerate(layer.blobs):
            values = blob.to_numpy()
            if name in converted and i == 0:
                c, kh, kw = converted[name]
                values = values.reshape(values.shape[0], c, kh, kw)
            blob_to_proto(values, lp.blobs.add())
    return out, weights


def _strip_splits(param):
    """The user's layers of a built net's NetParameter (Split layers undone)."""
    out = pb.NetParameter()
    out.CopyFrom(param)
    rename = {}
    keep = []
    for lp in out.layer:
        if lp.type == "Split" and lp.name.endswith("_split"):
            for t in lp.top:
                rename[t] = lp.bottom[0]
            continue
        keep.append(lp)
    for lp in keep:
        for i, b in enumerate(lp.bottom):
            lp.bottom[i] = rename.get(b, b)
    del out.layer[:]
    out.layer.extend(keep)
    return out


def atrous(param, output_stride):
    """A copy of NetParameter `param` whose downsampling stops at `output_stride`."""
    if output_stride < 1:
        raise NetdefError(f"output stride must be >= 1, got {output_stride}")
    out = pb.NetParameter()
    out.CopyFrom(param)
    stride = 1  # accumulated stride of the original net at the current layer's input
    factor = 1  # how much denser than the original the current layer's input is
    removed = False
    for lp in out.layer:
        if lp.type == "Convolution":
            cp = lp.convolution_param
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv_geometry(cp, lp.name)
            if factor > 1 and max(kh, kw) > 1:
                _set_pair(cp, "dilation", None, None, dh * factor, dw * factor)
                _set_pair(cp, "pad", "pad_h", "pad_w", ph * factor, pw * factor)
            s = max(sh, sw)
        elif lp.type == "Pooling":
            pp = lp.pooling_param
            k, (sh, sw), (ph, pw) = pool_geometry(pp, lp.name)
            if k is None:
                continue
            if factor > 1:
                kh, kw = ((k[0] - 1) * factor + 1, (k[1] - 1) * factor + 1)
                pp.ClearField("kernel_size")
                pp.kernel_h, pp.kernel_w = kh, kw
                pp.ClearField("pad")
                pp.pad_h, pp.pad_w = ph * factor, pw * factor
            s = max(sh, sw)
        else:
            continue
        if s > 1 and stride * s > output_stride:
            # this layer's stride is removed: it runs at stride 1, later layers are dilated
            if lp.type == "Convolution":
                _set_pair(lp.convolution_param, "stride", "stride_h", "stride_w", 1, 1)
            else:
                pp = lp.pooling_param
                pp.ClearField("stride")
                pp.stride_h = pp.stride_w = 1
            factor *= s
            removed = True
        stride *= s
    if not removed:
        raise NetdefError(f"the net's total stride ({stride}) is already <= {output_stride}")
    return out


def _set_pair(msg, repeated, h, w, vh, vw):
    msg.ClearField(repeated)
    if h is not None:
        msg.ClearField(h)
        msg.ClearField(w)
    if vh == vw:
        getattr(msg, repeated).append(vh)
    elif h is not None:
        setattr(msg, h, vh)
        setattr(msg, w, vw)
    else:
        getattr(msg, repeated).extend([vh, vw])


def transplant(new_net, source):
    """Copy params from `source` (a Net) into `new_net` by layer name where counts agree
    (reshaping as needed, as FCN's surgery does). Returns (copied, skipped) name lists."""
    copied, skipped = [], []
    for name, blobs in new_net.params.items():
        if name not in source.params:
            skipped.append(name)
            continue
        src = source.params[name]
        ok = len(src) == len(blobs) and all(a.count == b.count for a, b in zip(src, blobs))
        if not ok:
            skipped.append(name)
            log.info("transplant: %s skipped (%s vs %s)", name, [b.shape for b in src], [b.shape for b in blobs])
            continue
        for a, b in zip(src, blobs):
            b.data[...] = b.backend.asarray(a.to_numpy().reshape(b.shape), dtype=b.dtype)
        copied.append(name)
    return copied, skipped


def bilinear_kernel(size):
    return filler_values(pb.FillerParameter(type="bilinear"), (1, 1, size, size), None)[0, 0]


def bilinear(net, layers=None):
    """Set the weights of Deconvolution layers (all, or the named ones) to bilinear upsampling:
    the kernel on each channel's own map (grouped: every group; ungrouped: the diagonal)."""
    done = []
    for name, layer in net.layer_dict.items():
        if layer.type != "Deconvolution" or (layers is not None and name not in layers):
            continue
        w = layer.blobs[0]
        cin, cout_g, kh, kw = w.shape
        if kh != kw:
            raise NetdefError(f"bilinear needs square kernels, got {kh}x{kw}", layer=name)
        k = bilinear_kernel(kh)
        values = np.zeros(w.shape)
        if cout_g == 1:
            values[:] = k
        elif cout_g == cin:
            values[np.arange(cin), np.arange(cin)] = k
        else:
            raise NetdefError(f"bilinear needs one output channel per input channel, weights are {w.shape}",
                              layer=name)
        w.data[...] = w.backend.asarray(values, dtype=w.dtype)
        done.append(name)
    return done
