"""What the loss layers share: the loss_param normalization in force and the normalizer it
gives. Not a layer type itself.

    FULL = outer * inner positions, VALID = positions not ignored, BATCH_SIZE = outer,
    NONE = 1; then max(normalizer, 1) (a batch whose labels are all ignored gives loss 0,
    not NaN).
"""
from .. import netdef_pb2 as pb

Norm = pb.LossParameter
MODES = (Norm.FULL, Norm.VALID, Norm.BATCH_SIZE, Norm.NONE)


def loss_normalization(layer, default=Norm.VALID, legacy_normalize=True):
    """The NormalizationMode of `layer`'s loss_param: `normalization` if set, else the legacy
    `normalize` (true: VALID, false: BATCH_SIZE), else `default` (VALID for SoftmaxWithLoss,
    BATCH_SIZE for SigmoidCrossEntropyLoss, as in Caffe). Layers for which Caffe refuses the
    deprecated `normalize` (InfogainLoss) pass legacy_normalize=False: it is then an error."""
    lp = layer.layer_param.loss_param
    if lp.HasField("normalize") and not legacy_normalize:
        raise layer.error("loss_param.normalize is deprecated for this layer; use "
                          "loss_param.normalization (FULL, VALID, BATCH_SIZE or NONE)")
    if lp.HasField("normalization"):
        mode = lp.normalization
    elif lp.HasField("normalize"):
        mode = Norm.VALID if lp.normalize else Norm.BATCH_SIZE
    else:
        mode = default
    if mode not in MODES:
        raise layer.error(f"unknown normalization mode {mode}")
    return mode


def loss_normalizer(mode, outer, inner, valid):
    n = {Norm.FULL: outer * inner, Norm.VALID: valid, Norm.BATCH_SIZE: outer, Norm.NONE: 1}[mode]
    return max(float(n), 1.0)
