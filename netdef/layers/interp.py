"""Interp (DeepLab): bilinear resize of every channel with aligned corners.

interp_param { zoom_factor  shrink_factor  height  width  pad_beg (0)  pad_end (0) }
bottom[0]: N x C x H x W; bottom[1] (optional): a blob whose H x W is the output size (its
           batch must be N; then no size field may be set: DeepLab refuses the ambiguity).
The input window is H_in = H + pad_beg + pad_end rows from row -pad_beg (likewise W_in);
pads must be <= 0 (they crop), as in DeepLab.
output size (H_out; W_out likewise), the first rule that applies, in DeepLab's order:
          shrink_factor s only:   (H_in - 1) / s + 1                 (integer division)
          zoom_factor z only:     H_in + (H_in - 1)(z - 1)
          height and width:       height
          shrink and zoom:        h = (H_in - 1) / s + 1, then h + (h - 1)(z - 1)
forward:  output (h, w) reads the window at (r_h h, r_w w), r_h = (H_in - 1) / (H_out - 1)
          (0 when H_out = 1; computed in float, as DeepLab), bilinearly between the four
          neighbouring input pixels (the last row/column repeats at the edge). Corners map to
          corners, so any ratio works (e.g. 7 -> 10).
backward: the adjoint: each input pixel in the window gets the sum of dy over the outputs
          whose taps reach it, weighted by the same bilinear weights; pixels cropped away get 0.
          No gradient to bottom[1].  (kernels/interp.cu)
shape:    top = N x C x H_out x W_out
"""
import numpy as np

from ..core.layer import Layer
from . import register_layer


@register_layer("Interp")
class InterpLayer(Layer):
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.interp_param
        self.pad_beg, self.pad_end = int(p.pad_beg), int(p.pad_end)
        if self.pad_beg > 0 or self.pad_end > 0:
            raise self.error(f"interp_param pad_beg ({self.pad_beg}) and pad_end ({self.pad_end}) "
                             "must be <= 0 (only cropping is supported, as in DeepLab)")
        sized = [f for f in ("zoom_factor", "shrink_factor", "height", "width") if p.HasField(f)]
        if len(bottom) > 1 and sized:
            raise self.error(f"with a second bottom giving the output size, interp_param must not "
                             f"set {', '.join(sized)} (ambiguous)")
        if p.HasField("shrink_factor") and p.shrink_factor < 1:
            raise self.error(f"interp_param.shrink_factor must be >= 1, got {p.shrink_factor}")
        if p.HasField("zoom_factor") and p.zoom_factor < 1:
            raise self.error(f"interp_param.zoom_factor must be >= 1, got {p.zoom_factor}")
        if len(bottom) == 1 and not (p.HasField("shrink_factor") or p.HasField("zoom_factor")
                                     or (p.HasField("height") and p.HasField("width"))):
            raise self.error("interp_param needs zoom_factor, shrink_factor, or both height and "
                             "width (or a second bottom giving the size)")

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def _out_size(self, bottom, h_in, w_in):
        p = self.layer_param.interp_param
        if len(bottom) > 1:
            ref = bottom[1]
            if ref.num_axes != 4 or ref.shape[0] != bottom[0].shape[0]:
                raise self.shape_error(f"the size reference (bottom[1]) {ref.shape} must be 4-D "
                                       f"with the batch of bottom[0] {bottom[0].shape}")
            return ref.shape[2], ref.shape[3]
        zoom, shrink = p.HasField("zoom_factor"), p.HasField("shrink_factor")
        if shrink:
            h_in, w_in = (h_in - 1) // p.shrink_factor + 1, (w_in - 1) // p.shrink_factor + 1
            if not zoom:
                return h_in, w_in
        if zoom:
            z = p.zoom_factor
            return h_in + (h_in - 1) * (z - 1), w_in + (w_in - 1) * (z - 1)
        return int(p.height), int(p.width)

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != 4:
            raise self.shape_error(f"bottom[0] {x.shape} must be N x C x H x W")
        N, C, H, W = x.shape
        self.h_in, self.w_in = H + self.pad_beg + self.pad_end, W + self.pad_beg + self.pad_end
        if self.h_in <= 0 or self.w_in <= 0:
            raise self.shape_error(f"the pads ({self.pad_beg}, {self.pad_end}) crop all of "
                                   f"the input {x.shape}")
        self.h_out, self.w_out = self._out_size(bottom, self.h_in, self.w_in)
        if self.h_out <= 0 or self.w_out <= 0:
            raise self.shape_error(f"output size {self.h_out} x {self.w_out} must be positive")
        # DeepLab's ratios are floats whatever the dtype: same taps in float32 and float64.
        f32 = np.float32
        self.rh = float(f32(self.h_in - 1) / f32(self.h_out - 1)) if self.h_out > 1 else 0.0
        self.rw = float(f32(self.w_in - 1) / f32(self.w_out - 1)) if self.w_out > 1 else 0.0
        top[0].reshape((N, C, self.h_out, self.w_out))

    def _geometry(self, x):
        return (x.shape[2], x.shape[3], -self.pad_beg, -self.pad_beg, self.h_in, self.w_in,
                self.h_out, self.w_out, self.rh, self.rw)

    def forward(self, bottom, top):
        x = bottom[0]
        self.kernels("interp").interp_forward(top[0].count, x.data, top[0].data, *self._geometry(x))

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise self.error("cannot backpropagate to the size reference (bottom[1])")
        if propagate_down[0]:
            x = bottom[0]
            self.kernels("interp").interp_backward(x.count, top[0].diff, x.diff, *self._geometry(x))
