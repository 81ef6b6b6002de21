"""What the layers that take labels share: scores seen as (outer, C, inner) around the class
axis with one integer label per (outer, inner) position (Accuracy, SoftmaxWithLoss), or as rows
with one label per row (HingeLoss, MultinomialLogisticLoss), and the errors when labels do not
fit. Not a layer type itself.
"""
import numpy as np


def class_dims(scores, axis):
    """(outer, C, inner) of the scores blob around its class axis `axis` (negatives count
    from the end; out of range: a ShapeError naming the blob and its shape)."""
    axis = scores.canonical_axis(axis)
    return scores.count_range(0, axis), scores.shape[axis], scores.count_range(axis + 1)


def check_labels(layer, scores, labels, axis, same_first_axis=False):
    """(outer, C, inner) of `scores`, after checking that `labels` holds one label per
    position (outer * inner of them) and that there are classes; with same_first_axis (loss
    layers, as Caffe's LossLayer), also that labels and scores have the same first axis."""
    outer, C, inner = class_dims(scores, axis)
    n = outer * inner
    if same_first_axis and (not labels.shape or labels.shape[0] != scores.shape[0]):
        raise layer.shape_error(f"label shape {labels.shape} and score shape {scores.shape} "
                                "must have the same first (batch) dimension")
    if labels.count != n:
        raise layer.shape_error(
            f"label shape {labels.shape} ({labels.count} labels) does not fit score shape "
            f"{scores.shape}: with classes on axis {axis} there must be one label per position, "
            f"{n} labels (e.g. N x 1 x H x W labels for N x C x H x W scores)")
    if C == 0:
        raise layer.shape_error(f"score shape {scores.shape} has no classes on axis {axis}")
    return outer, C, inner


def check_row_labels(layer, x, labels, what, example=""):
    """(N, dim) of `x` seen as N rows (its first axis) of dim = count / N values, after checking
    that `labels` holds one label per row; `what` names x in the errors, `example` follows the
    count the labels need, with {N} replaced by it (e.g. " (e.g. {N} x 1 x 1 x 1)")."""
    if x.num_axes == 0 or x.shape[0] == 0:
        raise layer.shape_error(f"{what} {x.shape} need a first (batch) axis")
    N = x.shape[0]
    if labels.num_axes == 0 or labels.shape[0] != N or labels.count != N:
        raise layer.shape_error(f"labels {labels.shape} must hold one label per row of the "
                                f"{what} {x.shape}: N = {N} values{example.format(N=N)}")
    return N, x.count // N


def bad_label_error(layer, count, flags, scores, labels, has_ignore, ignore_label, C):
    """The error for `count` labels that are neither ignore_label nor in [0, C), naming the
    first of them (flags: 1 at a bad label's position, 0 elsewhere)."""
    from ..errors import NetdefError

    j = int(layer.xp.argmax(flags))
    where = tuple(int(v) for v in np.unravel_index(j, labels.shape))
    value = float(labels.data.reshape(-1)[j])
    ign = f" and not the ignore_label {ignore_label}" if has_ignore else ""
    return layer.error(f"{int(count)} label(s) outside [0, {C}){ign}; the first is {value:g} at index "
                       f"{where} of the label blob {labels.shape} (scores {scores.shape})", NetdefError)
