"""The deploy nets of bench/zoo/ (bench/zoo/SOURCES.md), made small enough for a test."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = ["caffenet", "googlenet", "resnet50", "squeezenet1.1", "mobilenet", "mobilenet_v2"]


def zoo_path(name):
    return os.path.join(ROOT, "bench", "zoo", f"{name}.prototxt")


def thin(path, factor):
    """A deploy prototxt with every num_output above 32 divided by `factor`: the same graph (pads,
    crops, offsets) with weights small enough for a test."""
    from netdef.core import proto
    param, _ = proto.read_net_text(path)
    for lp in param.layer:
        c = lp.convolution_param
        if c.group > 1 and c.group == c.num_output:  # depthwise: stays depthwise
            c.group = max(1, c.group // factor) if c.num_output > 32 else c.group
        for p in (c, lp.inner_product_param):
            if p.num_output > 32:
                p.num_output //= factor
    return param


def thin_zoo(name, factor):
    """thin() of bench/zoo/<name>.prototxt; skips the test where bench/ is not there."""
    import pytest
    path = zoo_path(name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not there")
    return thin(path, factor)
