"""The Net's inference fusion: per-channel maps and ReLUs folded into the layer before them.

A zoo net spends a quarter to two fifths of its inference time in memory-bound passes after
each convolution: its bias, then BatchNorm (y = a x + b per channel with global statistics),
Scale (y = s x + t per channel), ReLU, each a full read and write of the top. Composed, they are
one map per channel followed by a ReLU:

    conv top z = W * x   ->   y = relu_slope(z * A[c] + B[c]),
    A = a s,  B = (bias a + b) s + t            (composition of (scale, bias) pairs)

which the convolution applies as it writes its top (layers/scale.py's channel_epilogue, one
pass of kernels/scale.cu's channel_affine). The same holds after an InnerProduct, and a
BatchNorm, Scale or Bias whose input comes from elsewhere (a Concat, an Eltwise) takes the
maps after it the same way.

Exact in fp32 up to rounding (the composed coefficients are rounded once more than the layer by
layer products). Nothing the user sees changes:
  * every blob is written as without fusion: the folded layers compute in place on the head's
    top (which then holds the value after the last of them, as in Caffe), or the first of them
    writes a top of its own (MobileNet v2's conv -> BatchNorm "conv/bn" -> Scale, ReLU in
    place), and the head writes both its own top and the chain's result. A second blob of its
    own name inside a chain ends the chain there;
  * nothing is copied or folded into the weights: the coefficients are recomputed from the
    layers' params at each forward (a few vector operations of C values), so net.params[...]
    show the layers' own values and a change to them (net.params['bn1'][0].data[...] = ...,
    copy_from, a solver step of a shared train net) takes effect at the next forward;
  * forward(start=..., end=...) that cuts a chain runs that chain layer by layer (so the blobs
    hold what Caffe's ForwardFromTo leaves in them).
Only layers that no backward pass can reach are fused (Layer.need_backward False: every layer
of a TEST net without force_backward and without a loss under learnable params, frozen layers
of a TRAIN net); a layer a backward may run through keeps its own forward and what it keeps for
backward. Net(..., fuse=False), the command lines' --no-fuse or NETDEF_FUSE=0 turn it off.

The layers answer the questions (netdef/core/layer.py): epilogue_dims (can finish its top with
per-channel maps: Convolution, Deconvolution, InnerProduct, and the per-channel layers
themselves; Eltwise takes a ReLU only), affine_dims / channel_map (is a per-channel map: BatchNorm with global statistics,
Scale and Bias with their own param), relu_slope (is a ReLU: ends a chain).
"""
import os


class Epilogue:
    """What is folded into one head layer: `affine` (the per-channel layers, in order), `slope`
    (the final ReLU's negative slope, or None), `target` (the Blob the chain's result goes to
    when its first layer writes a top of its own, e.g. MobileNet v2's conv -> "conv/bn"; None
    when it is all in place); `head`, `members` are layer indices."""

    def __init__(self, head, members, affine, slope, target=None):
        self.head, self.members, self.affine, self.slope = head, members, affine, slope
        self.target = target

    @property
    def last(self):
        return self.members[-1]


def fusion_enabled(requested):
    """Net(fuse=None) follows the environment: NETDEF_FUSE=0 (or off/false/no) turns it off."""
    if requested is not None:
        return bool(requested)
    return os.environ.get("NETDEF_FUSE", "1").strip().lower() not in ("0", "off", "false", "no")


def plan(layers, bottoms, tops):
    """The chains to fuse, as Epilogues in layer order. layers, bottoms, tops: the Net's
    per-layer lists (layer objects, their bottom and top Blobs)."""
    folded = set()
    groups = []
    for hi, head in enumerate(layers):
        if hi in folded or head.need_backward or len(tops[hi]) != 1:
            continue
        dims = head.epilogue_dims(bottoms[hi], tops[hi])
        if dims is None:
            continue
        blob = tops[hi][0]
        members, affine, slope, target = [], [], None, None
        for li in range(hi + 1, len(layers)):
            if not any(b is blob for b in bottoms[li]) and not any(t is blob for t in tops[li]):
                continue  # a layer of another branch: it neither reads nor writes the chain
            layer = layers[li]
            if (layer.need_backward or len(bottoms[li]) != 1 or len(tops[li]) != 1
                    or bottoms[li][0] is not blob or any(layer.loss_weights)):
                break
            if tops[li][0] is not blob:
                # the first layer may write a top of its own: the head still writes its top
                # (the user may read it) and writes the chain's result there as well
                if members:
                    break
                blob = target = tops[li][0]
            relu = layer.relu_slope()
            if relu is not None:
                members.append(li)
                slope = relu
                break
            if layer.affine_dims(bottoms[li], tops[li]) != dims:
                break
            members.append(li)
            affine.append(layer)
        if members:
            folded.update(members)
            groups.append(Epilogue(hi, members, affine, slope, target))
    return groups


def describe(groups, names):
    """Lines saying which layers run folded into which (netdef info prints them)."""
    if not groups:
        return "inference fusion: none (no BatchNorm / Scale / Bias / ReLU chain that no " \
               "backward reaches, or fusion off)"
    lines = [f"inference fusion: {len(groups)} chains run as one layer each "
             f"({sum(len(g.members) for g in groups)} layers folded; --no-fuse turns it off)"]
    for g in groups:
        lines.append(f"  {names[g.head]} <- " + ", ".join(names[m] for m in g.members))
    return "\n".join(lines)


def active(groups, start, end):
    """(indices to skip, {head index: Epilogue or None}) for running layers start..end: a chain
    wholly inside the range runs fused, one the range cuts runs layer by layer."""
    skip, heads = set(), {}
    for g in groups:
        whole = start <= g.head and g.last <= end
        heads[g.head] = g if whole else None
        if whole:
            skip.update(g.members)
    return frozenset(skip), heads
