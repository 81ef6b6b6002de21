"""Precision as data: NVCaffe's type fields, read from a NetParameter.

NVCaffe gives a net defaults (NetParameter.default_forward_type / default_backward_type /
default_forward_math / default_backward_math) and each layer its own (LayerParameter.
forward_type / backward_type / forward_math / backward_math), from the enum Type (DOUBLE, FLOAT,
FLOAT16, INT, UINT, BOOL; netdef adds BFLOAT16), plus a static loss scale (global_grad_scale).
netdef parses them all, so NVCaffe's prototxts load, but computes every layer in the Net's dtype
(float32, or float64 with dtype=np.float64): reduced precision (FLOAT16, BFLOAT16) is not built
yet. So that nothing is skipped silently, a net whose file asks for any other type than its own
gets one warning naming the file, the fields and the layers. global_grad_scale scales the loss
gradient and unscales it before the update, which in float32 changes nothing but rounding: it is
mentioned in that warning when it is not 1.
"""
import logging

import numpy as np

from . import netdef_pb2 as pb

log = logging.getLogger("netdef")

FIELDS = ("forward_type", "backward_type", "forward_math", "backward_math")
_COMPUTED = {np.dtype(np.float32): pb.FLOAT, np.dtype(np.float64): pb.DOUBLE}


def requested(param, dtype=np.float32):
    """[(where, field, type name)] for every type field of a NetParameter set to another type
    than the one a Net of `dtype` computes in."""
    own = _COMPUTED.get(np.dtype(dtype), pb.FLOAT)
    asked = []
    for field in FIELDS:
        name = "default_" + field
        if param.HasField(name) and getattr(param, name) != own:
            asked.append(("net", name, pb.Type.Name(getattr(param, name))))
    for lp in param.layer:
        for field in FIELDS:
            if lp.HasField(field) and getattr(lp, field) != own:
                asked.append((f"layer '{lp.name}'", field, pb.Type.Name(getattr(lp, field))))
    return asked


def warn_unsupported(param, filename=None, dtype=np.float32):
    """Log once for a net what its file asks of precision that the net does not do; returns the
    message (None when there is nothing to say)."""
    asked = requested(param, dtype)
    scale = param.global_grad_scale if param.HasField("global_grad_scale") else 1.0
    if not asked and scale == 1.0:
        return None
    computed = "float64" if np.dtype(dtype) == np.float64 else "float32"
    parts = [f"{where} {field}: {value}" for where, field, value in asked[:6]]
    if len(asked) > 6:
        parts.append(f"and {len(asked) - 6} more")
    if scale != 1.0:
        parts.append(f"global_grad_scale: {scale:g} (a static loss scale: no effect in {computed})")
    message = (f"{filename or 'net ' + repr(param.name)}: asks for " + "; ".join(parts)
               + f". netdef computes every layer in {computed}: reduced precision (FLOAT16, "
               "BFLOAT16) is not built yet")
    log.warning(message)
    return message
