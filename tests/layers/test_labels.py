"""The label check Accuracy and SoftmaxWithLoss share (layers/_labels.py): one message for a
label blob that does not hold one label per position, and one for a label outside the classes."""
import numpy as np
import pytest

from netdef.errors import NetdefError, ShapeError

from gradcheck import build_layer, forward

ACC = "name: 'acc' type: 'Accuracy'"
LOSS = "name: 'loss' type: 'SoftmaxWithLoss'"
MISFIT = (r"label shape \(2, 1, 3, 4\) \(24 labels\) does not fit score shape \(2, 5, 4, 4\): "
          r"with classes on axis 1 there must be one label per position, 32 labels")


@pytest.mark.parametrize("layer", [ACC, LOSS])
def test_label_count_message_is_the_same_from_both_layers(layer):
    with pytest.raises(ShapeError, match=MISFIT):
        build_layer(layer, [np.zeros((2, 5, 4, 4)), np.zeros((2, 1, 3, 4))])


@pytest.mark.parametrize("layer, axis", [(ACC, "accuracy_param { axis: -1 }"),
                                         (LOSS, "softmax_param { axis: -1 }")])
def test_the_class_axis_may_be_negative(layer, axis):
    # classes last: (2, 3, 5) scores, one label per (2, 3) position
    layer_, b, t = build_layer(f"{layer} {axis}", [np.zeros((2, 3, 5)), np.zeros((2, 3))])
    assert (layer_.outer, layer_.C, layer_.inner) == (6, 5, 1)
    with pytest.raises(ShapeError, match=r"with classes on axis -1 there must be one label per position, 6"):
        build_layer(f"{layer} {axis}", [np.zeros((2, 3, 5)), np.zeros((2, 4))])


def test_only_the_loss_checks_the_first_axis():
    scores, labels = np.zeros((2, 3, 4, 4)), np.zeros((4, 1, 2, 4))  # 32 labels, but 4 items
    with pytest.raises(ShapeError, match=r"must have the same first \(batch\) dimension"):
        build_layer(LOSS, [scores, labels])
    build_layer(ACC, [scores, labels])  # Caffe's Accuracy checks the count only


@pytest.mark.parametrize("layer", [ACC, LOSS])
def test_bad_label_message_is_the_same_from_both_layers(layer):
    labels = np.zeros((2, 1, 3, 3))
    labels[1, 0, 2, 1] = 7
    layer_, b, t = build_layer(layer, [np.zeros((2, 4, 3, 3)), labels])
    with pytest.raises(NetdefError, match=r"1 label\(s\) outside \[0, 4\); the first is 7 at index "
                                          r"\(1, 0, 2, 1\) of the label blob \(2, 1, 3, 3\) "
                                          r"\(scores \(2, 4, 3, 3\)\)"):
        forward(layer_, b, t)
