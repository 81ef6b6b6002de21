"""What Convolution and Deconvolution share: ConvolutionParameter parsing, output sizes, weights,
and the three products that both layers are made of.

Both layers are described by one 2-D *convolution geometry* between an "image" side
(Ci channels, IH x IW) and a "column" side (Co channels, OH x OW):

    OH = (IH + 2 ph - (dh (kh - 1) + 1)) / sh + 1       (likewise OW)
    weights W: (Co, Ci / group, kh, kw), bias: (num_output,)

    correlate:          col_side = W * im2col(image)              (per group a GEMM)
    correlate_adjoint:  image    = col2im(W^T col_side)           (its transpose)
    weight_grad:        dW      += col_side * im2col(image)^T

Convolution:   image = bottom, column side = top.   forward = correlate,
               backward-data = correlate_adjoint, dW = weight_grad(bottom, dtop).
Deconvolution: image = top, column side = bottom.   forward = correlate_adjoint,
               backward-data = correlate, dW = weight_grad(dtop, bottom).
So Caffe's Deconvolution weight layout (channels, num_output / group, kh, kw) is the same array.

How the products run (all batched: no Python loop per image x group):
  * depthwise (group == Ci == Co: MobileNet's, FCN's bilinear upsampling; or group == Ci > 1
    with a channel multiplier, Co = mult Ci): direct kernels dw_conv_* of
    kernels/depthwise_conv.cu, no GEMM at all (whole rows per iteration on the CPU, 3x3 taps in
    registers);
  * other grouped convolutions (AlexNet's group 2, ResNeXt's): the im2col path below, all groups
    in one batched product over an (images, group, ...) view, not a GEMM call per group;
  * 1x1 kernel, stride 1, pad 0: the image *is* its column matrix: one batched GEMM;
  * otherwise im2col / col2im (kernels/im2col.cu) into the backend's workspace (shared by all
    layers of a device and dtype), then one product over a (images, group, ...) view. Images
    are taken together as long as their column matrices fit in the backend's col_budget
    elements; a single image whose column matrix is larger is processed in bands of output rows.
The products are asked of the backend as math (backend.matmul: out = A B, written in place even
into a band of rows; backend.matmul_sum: dW += sum_i A_i B_i; backend.add_channel_sums: the bias
gradient); how each device runs them (BLAS with beta, a product taken transposed, cuBLAS, bounded
temporaries) is the backend's business (netdef/backend/).
ConvolutionParameter.engine and force_nd_im2col only choose an implementation in Caffe; netdef
accepts them and always uses the paths above (the results are the same).
"""
import math

import numpy as np

from ..core.fillers import fill
from ..core.layer import Layer
from .scale import channel_epilogue, epilogue_map


def _pair(p, name, default, fail, h_name=None, w_name=None, both_required=True, what="convolution"):
    vals = list(getattr(p, name))
    if h_name and (p.HasField(h_name) or p.HasField(w_name)):
        if vals:
            raise fail(f"give either {name} or {h_name}/{w_name}, not both")
        if both_required and not (p.HasField(h_name) and p.HasField(w_name)):
            raise fail(f"{h_name} and {w_name} must be given together")
        return int(getattr(p, h_name)), int(getattr(p, w_name))
    if not vals:
        return default, default
    if len(vals) == 1:
        return int(vals[0]), int(vals[0])
    if len(vals) == 2:
        return int(vals[0]), int(vals[1])
    raise fail(f"{name} has {len(vals)} values {vals}; netdef's {what} is 2-D (one "
               "value, or two for h and w): N-D convolution is not supported")


def conv_geometry(p, fail, what="convolution"):
    """((kh, kw), (sh, sw), (ph, pw), (dh, dw)) of a ConvolutionParameter, validated; `fail(msg)`
    returns the exception to raise. Shared by the layers and netdef.coord_map."""
    if not p.kernel_size and not p.HasField("kernel_h") and not p.HasField("kernel_w"):
        raise fail("convolution_param needs kernel_size or kernel_h and kernel_w")
    k = _pair(p, "kernel_size", None, fail, "kernel_h", "kernel_w", what=what)
    s = _pair(p, "stride", 1, fail, "stride_h", "stride_w", what=what)
    pad = _pair(p, "pad", 0, fail, "pad_h", "pad_w", both_required=False, what=what)
    d = _pair(p, "dilation", 1, fail, what=what)
    for name, (a, b) in (("kernel size", k), ("stride", s), ("dilation", d)):
        if a <= 0 or b <= 0:
            raise fail(f"{name} must be > 0, got {a} x {b} (h x w)")
    return k, s, pad, d


class BaseConvolutionLayer(Layer):
    min_bottom = 1
    min_top = 1
    #: Deconvolution sets True: the bottom is the column side, the top the image side.
    transposed = False
    #: Tests turn the depthwise, 1x1 and Winograd shortcuts off to run the general im2col path.
    fast_paths = True
    #: When the Winograd path pays, on 2 Zen 3 cores: its 16 GEMMs (Co x Ci by Ci x tiles) must
    #: be long enough in Ci x tiles, or they run far below the rate of im2col's one GEMM (Co x
    #: 9 Ci by Ci x 4 tiles) and the 2.25x fewer multiplies are lost. Layer by layer inside the
    #: zoo nets, batch 1, im2col -> Winograd ms (3x3 pad 1): ResNet-50 128 ch at 28x28 (196
    #: tiles, Ci x tiles 25k) 2.06 -> 1.43, 256 ch at 14x14 (49, 12.5k) 1.99 -> 1.60; GoogLeNet
    #: 96 -> 128 at 28x28 (18.8k) 2.08 -> 2.03, 160 -> 320 at 14x14 (7.8k) 1.83 -> 1.83, 96 -> 208
    #: at 14x14 (4.7k) 0.85 -> 0.95; alone: 512 -> 512 at 7x7 (16 tiles, 8k) 3.5 -> 4.9, batch 8
    #: (128 tiles, 65k) 19.8 -> 12.9; 16 -> 32 at 56x56 batch 8 4.35 -> 4.53 (the channel floor).
    winograd_min_channels = 16
    winograd_min_tiles = 40
    winograd_min_work = 10000  # Ci x tiles

    # ---- parameters ---------------------------------------------------------------------
    def _read_params(self):
        p = self.layer_param.convolution_param
        if not p.HasField("num_output") or p.num_output == 0:
            raise self.error("convolution_param.num_output must be set and > 0")
        self.num_output = int(p.num_output)
        self.bias_term = p.bias_term
        self.group = int(p.group)
        if self.group == 0:
            raise self.error("convolution_param.group must be > 0")
        (self.kh, self.kw), (self.sh, self.sw), (self.ph, self.pw), (self.dh, self.dw) = \
            conv_geometry(p, lambda msg: self.error(msg), self.type)
        # steps between the kernel taps that reach one input position (see kernels/im2col.cu)
        self.steph = self.sh // math.gcd(self.sh, self.dh)
        self.stepw = self.sw // math.gcd(self.sw, self.dw)
        self.ext_h = self.dh * (self.kh - 1) + 1
        self.ext_w = self.dw * (self.kw - 1) + 1
        return p

    def _geometry_text(self):
        return (f"kernel {self.kh}x{self.kw}, stride {self.sh}x{self.sw}, pad {self.ph}x{self.pw}, "
                f"dilation {self.dh}x{self.dw}")

    def _check_bottom(self, shape):
        if len(shape) == 5:
            raise self.shape_error(f"bottom shape {shape}: N-D convolution (3 spatial axes) is not "
                                   "supported; netdef's convolutions are 2-D (N, C, H, W)")
        if len(shape) != 4:
            raise self.shape_error(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
        if any(d <= 0 for d in shape[1:]):
            raise self.shape_error(f"bottom shape {shape} has a zero size")

    def setup(self, bottom, top):
        p = self._read_params()
        shape = bottom[0].shape
        if p.axis not in (1, -3) or (p.axis == -3 and len(shape) != 4):
            raise self.error(f"convolution_param.axis {p.axis}: only the channel axis 1 is supported")
        self._check_bottom(shape)
        self.channels = shape[1]
        for what, v in (("channels", self.channels), ("num_output", self.num_output)):
            if v % self.group:
                raise self.shape_error(f"{what} {v} is not divisible by group {self.group} "
                                       f"(bottom shape {shape})")
        if self.transposed:
            self.Ci, self.Co = self.num_output, self.channels
        else:
            self.Ci, self.Co = self.channels, self.num_output
        self.blobs = [self.make_blob((self.Co, self.Ci // self.group, self.kh, self.kw))]
        fill(self.blobs[0], p.weight_filler, self.name)
        if self.bias_term:
            self.blobs.append(self.make_blob((self.num_output,)))
            fill(self.blobs[1], p.bias_filler, self.name)

    def adapt_param(self, index, values):
        """Dense (ungrouped) weights (Co, Ci, kh, kw) whose off-group blocks are zero, as in a
        caffemodel whose layer had no `group` (e.g. FCN's bilinear deconvolutions), become this
        grouped layer's (Co, Ci / group, kh, kw)."""
        G = self.group
        if index != 0 or G == 1 or tuple(values.shape) != (self.Co, self.Ci, self.kh, self.kw):
            return None
        cog, cig = self.Co // G, self.Ci // G
        blocks = values.reshape(G, cog, G, cig, self.kh, self.kw)
        diag = blocks[np.arange(G), :, np.arange(G)]  # (G, cog, cig, kh, kw)
        if np.count_nonzero(values) != np.count_nonzero(diag):
            return None
        return np.ascontiguousarray(diag.reshape(self.Co, cig, self.kh, self.kw))

    # ---- shapes -------------------------------------------------------------------------
    def output_size(self, h, w):
        """Top spatial size for a bottom of spatial size (h, w)."""
        raise NotImplementedError

    def reshape(self, bottom, top):
        if len(bottom) != len(top):
            raise self.error(f"takes as many tops as bottoms (bottom[i] -> top[i]), got "
                             f"{len(bottom)} bottoms and {len(top)} tops")
        shape = bottom[0].shape
        self._check_bottom(shape)
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != shape:
                raise self.shape_error(f"all bottoms must have one shape: bottom[0] {shape}, "
                                       f"bottom[{i}] {b.shape}")
        if shape[1] != self.channels:
            raise self.shape_error(f"bottom shape {shape} has {shape[1]} channels; the weights "
                                   f"{self.blobs[0].shape} were made for {self.channels}")
        N, _, H, W = shape
        oh, ow = self.output_size(H, W)
        for t in top:
            t.reshape(N, self.num_output, oh, ow)
        if self.transposed:
            self.IH, self.IW, self.OH, self.OW = oh, ow, H, W
        else:
            self.IH, self.IW, self.OH, self.OW = H, W, oh, ow
        self._plan(N)

    def _plan(self, N):
        G = self.group
        self.K = self.Ci * self.kh * self.kw  # rows of one image's column matrix
        self.L = self.OH * self.OW
        # depthwise, also with a channel multiplier (Co = mult Ci, group = Ci > 1); an ordinary
        # one-input-channel convolution (group 1) keeps its GEMM
        if self.fast_paths and G == self.Ci and self.Co % G == 0 and (G > 1 or self.Co == 1):
            self.path = "depthwise"
        elif (self.fast_paths and self.kh == self.kw == 1 and self.sh == self.sw == 1
              and self.ph == self.pw == 0):
            self.path = "1x1"
        else:
            self.path = "im2col"
        # Winograd F(m x m, 3x3) for the forward correlation (kernels/winograd.cu): 3x3, stride
        # 1, no dilation, no groups, enough channels and tiles that the GEMMs dominate its
        # transforms; bands of images or tile rows keep V and M within the workspace bound
        t2 = -(-self.OH // 2) * -(-self.OW // 2)  # an image's F(2x2) tiles: the thresholds' unit
        self.wino_m = self._winograd_tile(t2)
        self.tiles = -(-self.OH // self.wino_m), -(-self.OW // self.wino_m)
        P2 = N * t2
        self.winograd = (self.fast_paths and self.backend.winograd and self.path == "im2col"
                         and G == 1 and self.kh == self.kw == 3 and self.sh == self.sw == 1
                         and self.dh == self.dw == 1 and min(self.Ci, self.Co) >= self.winograd_min_channels
                         and P2 >= self.winograd_min_tiles and self.Ci * P2 >= self.winograd_min_work
                         and self.wino_m * self.tiles[1] + 4 <= 1024)  # winograd.cu's WINO_MAX_COLS
        # images of few pixels run merged (_merge: one product, no per-image temporaries of the
        # weights' size), so only their columns count against the budget
        per_image = self.K * self.L if self.L <= self.merge_max_pixels else max(self.K * self.L, self.Co * self.K // G)
        budget = self.backend.col_budget
        self.images_per_chunk = min(N, budget // per_image) if N else 0
        self.rows_per_chunk = self.OH
        if self.images_per_chunk == 0 and N:
            self.rows_per_chunk = max(1, min(self.OH, budget // max(self.K * self.OW, 1)))

    def _chunks(self, N):
        """(first image, images, first output row, rows) of each piece of work."""
        if self.images_per_chunk:
            for n0 in range(0, N, self.images_per_chunk):
                yield n0, min(self.images_per_chunk, N - n0), 0, self.OH
        else:
            for n0 in range(N):
                for oh0 in range(0, self.OH, self.rows_per_chunk):
                    yield n0, 1, oh0, min(self.rows_per_chunk, self.OH - oh0)

    def _timed(self, phase):
        return self.backend.timed(phase)

    # ---- the three products -------------------------------------------------------------
    def _weights_g(self, W):
        G = self.group
        return W.reshape(G, self.Co // G, self.K // G)

    def _im2col(self, img, n0, nb, oh0, rows):
        """Column matrices of images n0 .. n0 + nb - 1, output rows oh0 .. oh0 + rows - 1,
        as a (nb, group, K / group, rows * OW) view of the workspace."""
        G = self.group
        col = self.backend.workspace(self.dtype, nb * self.K * rows * self.OW)
        iters, tile = self.row_launch(nb * self.K * rows * self.OW, rows * self.OW)
        with self._timed("im2col"):
            self.kernels("im2col").im2col(
                iters, img[n0:n0 + nb], col, self.IH, self.IW,
                self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, self.OW,
                oh0, rows, tile)
        return col.reshape(nb, G, self.K // G, rows * self.OW)

    def _col2im(self, col, img, n0, nb, oh0, rows):
        """img[n0 : n0 + nb] = col2im(col), or, for a band of rows, += on the rows it reaches."""
        if rows == self.OH:
            h0, hrows, acc = 0, self.IH, 0
        else:
            h0 = max(0, oh0 * self.sh - self.ph)
            h1 = min(self.IH, (oh0 + rows - 1) * self.sh - self.ph + self.ext_h)
            hrows, acc = h1 - h0, 1
            if oh0 == 0:
                img[n0:n0 + nb] = 0
        iters, tile = self.row_launch(nb * self.Ci * hrows * self.IW, self.IW)
        with self._timed("col2im"):
            self.kernels("im2col").col2im(
                iters, col, img[n0:n0 + nb], self.IH, self.IW,
                self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, self.OW,
                oh0, rows, h0, hrows, self.steph, self.stepw, tile, acc)

    def _dw_args(self):
        return (self.Ci, self.IH, self.IW, self.OH, self.OW, self.kh, self.kw, self.sh, self.sw,
                self.ph, self.pw, self.dh, self.dw, self.Co // self.Ci)

    def correlate(self, img, out, finish=None, W=None):
        """out (N, Co, OH, OW) = W * im2col(img), img (N, Ci, IH, IW); W the layer's weights
        unless given (their rounded copy in reduced precision). finish (depthwise path only):
        (s, b, slope, target) of a per-channel map and ReLU (None for none) that the kernel
        applies as it writes each segment of out, writing the result to target (out, or
        another array of its shape: out then keeps the convolution)."""
        G, N = self.group, img.shape[0]
        W = self.blobs[0].data if W is None else W
        if self.path == "depthwise":
            iters, tile = self.row_launch(out.size, self.L)  # segments of planes
            s, b, slope, target = finish or (None, None, None, out)
            with self._timed("depthwise"):
                self.kernels("depthwise_conv").dw_conv_forward(
                    iters, img, W, out, *self._dw_args(), tile, target, W if s is None else s,
                    W if b is None else b, int(s is not None), int(b is not None),
                    int(slope is not None), 0.0 if slope is None else slope)
            return
        assert finish is None, "only the depthwise kernel finishes its output itself"
        if self.winograd:
            self._winograd(img, W, out)
            return
        Wg = self._weights_g(W)
        out4 = out.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                self._merged_product(Wg, img.reshape(N, G, self.K // G, self.L), out4, self.OH)
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = self._im2col(img, n0, nb, oh0, rows)
            with self._timed("gemm"):
                band = out4[n0:n0 + nb, :, :, oh0 * self.OW:(oh0 + rows) * self.OW]
                self._merged_product(Wg, col, band, rows)

    def _winograd(self, img, W, out):
        """out = W * img by F(m x m, 3x3), m = wino_m: U = G g G^T, V = B^T d B, M[xi] = U[xi]
        V[xi] (16 or 36 GEMMs in one batched product), out = A^T M A (kernels/winograd.cu)."""
        N, Ci, Co = img.shape[0], self.Ci, self.Co
        TH, TW = self.tiles
        k = self.kernels("winograd")
        m = self.wino_m
        xi = (m + 2) ** 2
        U = self._winograd_weights(W)
        for n0, nb, th0, BH in self._winograd_bands(N):
            P = nb * BH * TW
            V = self.backend.workspace(self.dtype, xi * Ci * P, "winograd_v")
            M = self.backend.workspace(self.dtype, xi * Co * P)
            with self._timed("winograd"):
                k.wino_input(nb * Ci * BH, img[n0:n0 + nb], V, Ci, self.IH, self.IW, self.ph,
                             self.pw, th0, BH, TW, m)
            # U and V are transforms of the operands, not bf16 / fp16 numbers themselves: a
            # float32 product (Backend.operands(None)), whatever the layer's precision
            with self._timed("gemm"), self.backend.operands(None):
                self.backend.matmul(U.reshape(xi, Co, Ci), V.reshape(xi, Ci, P), M.reshape(xi, Co, P))
            with self._timed("winograd"):
                k.wino_output(nb * Co * BH, M, out[n0:n0 + nb], Co, self.OH, self.OW, th0, BH, TW, m)

    #: Keep the transformed weights U of a layer no backward can reach (a TEST net's) from one
    #: forward to the next, with a copy of the weights they came from: a forward whose weights
    #: are not bitwise those (a user's assignment to net.params, copy_from, a shared net's
    #: solver step) transforms them again. Costs (m + 2)^2 / 9 + 1 times the weights' memory.
    winograd_cache = True

    def _winograd_weights(self, W):
        """U ((m + 2)^2, Co, Ci) = the transform of W: a workspace written now, or the cached one."""
        m, pairs = self.wino_m, self.Co * self.Ci
        xi = (m + 2) ** 2
        cached = getattr(self, "_wino_cache", None)
        keep = self.winograd_cache and not self.need_backward
        if keep and cached is not None and cached[0] == m and self.backend.xp.array_equal(cached[1], W):
            return cached[2]
        if keep:
            U = self.backend.xp.empty(xi * pairs, self.dtype)
        else:
            U = self.backend.workspace(self.dtype, xi * pairs, "winograd_u")
        with self._timed("winograd"):
            iters, tile = self.row_launch(pairs, pairs)
            self.kernels("winograd").wino_weight(iters, W, U, pairs, tile, m)
        self._wino_cache = (m, self.backend.xp.array(W, copy=True), U) if keep else None
        return U

    #: The Winograd tile, 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)); None: _winograd_tile's rule.
    winograd_tile = None

    def _winograd_tile(self, t2):
        """F(4x4, 3x3) where its 36 GEMMs over the 4x4 tiles do fewer multiplies than F(2x2,
        3x3)'s 16 over an image's t2 2x2 tiles by winograd_f4_gain (the tiles of an image whose
        side is not a multiple of 4 overhang it: 13 x 13 gives 16 tiles of 16 outputs for 169),
        else F(2x2)."""
        if self.winograd_tile is not None:
            return self.winograd_tile
        t4 = -(-self.OH // 4) * -(-self.OW // 4)
        return 4 if 36 * t4 * self.winograd_f4_gain <= 16 * t2 else 2

    #: How many times fewer multiplies F(4x4, 3x3) must do than F(2x2, 3x3) to be taken. Its
    #: 36 GEMMs are 4x narrower (tiles / 4) and run at a lower rate, its transforms cost more.
    #: F(4x4) / F(2x2) time on 2 Zen 4 cores, TEST nets (weights transformed once), by gain:
    #: 1.78 (sides multiple of 4) 0.52-0.95 (64 -> 192 at 56, 128 ch at 28 and 163, 512 at 7
    #: batch 8); 1.62-1.69 (41, 82) 0.81; 1.49 (21) 0.99; 1.36 (13, 14; batch 1 and 8) 0.97-1.17.
    winograd_f4_gain = 1.5

    #: Tiles' worth of V and M (16 or 36 values per channel and tile) the Winograd path holds at
    #: once, in units of the backend's col_budget.
    winograd_budget = 4

    def _winograd_bands(self, N):
        """(first image, images, first tile row, tile rows) of each band of the Winograd path:
        whole images while (m + 2)^2 max(Ci, Co) values per tile of them fit winograd_budget x
        col_budget, else bands of tile rows of one image (at least one row)."""
        TH, TW = self.tiles
        xi = (self.wino_m + 2) ** 2
        cap = int(self.winograd_budget * self.backend.col_budget // (xi * max(self.Ci, self.Co) * TW))
        if cap >= TH:
            per = max(1, min(N, cap // TH))
            for n0 in range(0, N, per):
                yield n0, min(per, N - n0), 0, TH
        else:
            rows = max(1, cap)
            for n0 in range(N):
                for th0 in range(0, TH, rows):
                    yield n0, 1, th0, min(rows, TH - th0)

    def correlate_adjoint(self, cols, img, W=None):
        """img (N, Ci, IH, IW) = col2im(W^T cols), cols (N, Co, OH, OW): written, not added."""
        G, N = self.group, img.shape[0]
        W = self.blobs[0].data if W is None else W
        if self.path == "depthwise":
            # whole planes at stride 1 (the flat plane loop); rows at a larger stride, where the
            # work per plane is long (FCN's 568 x 568 upsampling: 21 planes on the threads)
            L = self.IH * self.IW
            _, tile = self.row_launch(img.size, L if self.sh == self.sw == 1 else self.IW)
            iters = img.size // L * -(-L // tile)  # the kernel's segments of planes
            with self._timed("depthwise"):
                self.kernels("depthwise_conv").dw_conv_backward(
                    iters, cols, W, img, *self._dw_args(),
                    self.steph, self.stepw, tile)
            return
        WgT = self._weights_g(W).transpose(0, 2, 1)
        cols4 = cols.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                self._merged_product(WgT, cols4, img.reshape(N, G, self.K // G, self.L), self.OH)
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = self.backend.workspace(self.dtype, nb * self.K * rows * self.OW)
            col = col.reshape(nb, G, self.K // G, rows * self.OW)
            with self._timed("gemm"):
                band = cols4[n0:n0 + nb, :, :, oh0 * self.OW:(oh0 + rows) * self.OW]
                self._merged_product(WgT, band, col, rows)
            self._col2im(col, img, n0, nb, oh0, rows)

    def weight_grad(self, img, cols, dW):
        """dW (Co, Ci / group, kh, kw) += cols * im2col(img)^T, summed over the images."""
        G, N = self.group, img.shape[0]
        if self.path == "depthwise":
            taps = self.Co * self.kh * self.kw
            parts = max(1, min(N * self.OH, self.backend.reduce_parts(taps, N * self.L)))
            partial = self.backend.workspace(self.dtype, taps * parts)
            with self._timed("depthwise"):
                self.kernels("depthwise_conv").dw_conv_weight_partial(
                    taps * parts, img, cols, partial, N, *self._dw_args(), parts)
                dW += partial.reshape(dW.shape + (parts,)).sum(axis=-1)
            return
        dWg = self._weights_g(dW)
        cols4 = cols.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                img4 = img.reshape(N, G, self.K // G, self.L)
                c, x = (self._pixels_of(cols4), self._pixels_of(img4)) if self._merge(N, self.OH) else (cols4, img4)
                self.backend.matmul_sum(c, x.transpose(0, 1, 3, 2), dWg)
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = self._im2col(img, n0, nb, oh0, rows)
            with self._timed("gemm"):
                c = cols4[n0:n0 + nb, :, :, oh0 * self.OW:(oh0 + rows) * self.OW]
                if self._merge(nb, rows):
                    c, col = self._pixels_of(c), self._pixels_of(col)
                self.backend.matmul_sum(c, col.transpose(0, 1, 3, 2), dWg)

    #: Images of at most this many output pixels run their products as one image of all their
    #: pixels (_merge), not one product per image. 64 takes 7 x 7 and 5 x 5 tops (ResNet's res5,
    #: GoogLeNet's 5a/5b, FCN's fc6/fc7); at 13 x 13 (SqueezeNet batch 8) the copies cost about
    #: what the wider GEMMs win (same-process A/B within this host's noise, bench/README.md).
    merge_max_pixels = 64

    def _merge(self, nb, rows):
        """Whether the nb images of a chunk (whole images: rows = OH) go through one product.
        Image by image, a product of P <= merge_max_pixels pixels is a thin GEMM (FCN's fc6 at
        5 x 5: 4096 x 25088 x 25) that every BLAS runs far below its rate, and the weight
        gradient's is a K-deep sum of P terms that reads and writes dW (fc6: 103 M floats) once
        per image. Merged, the GEMMs see nb P columns; the price is copying the columns and the
        top (nb P (K + Co) values) between the images' layout and the pixels' one."""
        return nb > 1 and rows == self.OH and self.L <= self.merge_max_pixels

    def _merged_product(self, w, x, out, rows):
        """out (nb, G, R, P) = w (G, R, S) @ x (nb, G, S, P), as one product over all nb P pixels
        where _merge says so for these `rows` (through a workspace in the pixels' layout), else
        image by image."""
        nb, G, R, P = out.shape
        if not self._merge(nb, rows):
            self.backend.matmul(w, x, out)
            return
        merged = self.backend.workspace(self.dtype, out.size, "merged").reshape(1, G, R, nb * P)
        self.backend.matmul(w, self._pixels_of(x), merged)
        out[...] = self._images_of(merged, nb)

    def _pixels_of(self, a):
        """(nb, G, R, P) per-image matrices as (1, G, R, nb P): one image of all their pixels."""
        nb, G, R, P = a.shape
        return self.xp.ascontiguousarray(a.transpose(1, 2, 0, 3)).reshape(1, G, R, nb * P)

    def _images_of(self, a, nb):
        """The inverse of _pixels_of: (1, G, R, nb P) as a (nb, G, R, P) view."""
        _, G, R, nbP = a.shape
        return a.reshape(G, R, nb, nbP // nb).transpose(2, 0, 1, 3)

    # ---- forward / backward -------------------------------------------------------------
    def _finish(self, y):
        """The bias, and what the inference fusion folded after the layer (self.epilogue: the
        BatchNorm / Scale and ReLU that follow), in one pass over the top y (layers/scale.py's
        channel_epilogue)."""
        if self.bias_term or self.epilogue is not None:
            with self._timed("bias"):
                b = self.blobs[1].data if self.bias_term else None
                channel_epilogue(self, y, None, b, y, self.num_output, y.size // max(
                    y.shape[0] * self.num_output, 1))

    def epilogue_dims(self, bottom, top):
        if len(top) != 1:
            return None
        N, C, H, W = top[0].shape
        return N, C, H * W

    def _bias_grad(self, dy, db):
        """db += sum over images and pixels of dy (N, C, H, W)."""
        self.backend.add_channel_sums(dy, db)

    def _operand(self, array, direction, slot):
        """The products' operand: on the im2col and 1x1 paths only GEMMs take it (and im2col's
        copy, which keeps values), so it may go unrounded to a GEMM that rounds
        (Layer.product_operand); the depthwise kernels and Winograd's transforms take the
        rounded copy."""
        if self.path in ("im2col", "1x1") and not self.winograd:
            return self.product_operand(array, direction, slot)
        return self.operand(array, direction, slot)

    def forward(self, bottom, top):
        bias = self.blobs[1].data if self.bias_term else None
        # the products' operands: the arrays themselves, or their rounded copies (Layer.operand)
        W = self._operand(self.blobs[0].data, "forward", "w")
        with self.products("forward"):
            self._forward(bottom, top, W, bias)

    def _forward(self, bottom, top, W, bias):
        for b, t in zip(bottom, top):
            x = self._operand(b.data, "forward", "x")
            if self.transposed:
                self.correlate_adjoint(x, t.data, W)
            elif self.path == "depthwise" and (bias is not None or self.epilogue is not None):
                ep = self.epilogue
                if ep is None or ep.target is None:  # in place: the top holds the result
                    self.correlate(x, t.data, epilogue_map(self, None, bias) + (t.data,), W)
                    continue
                if bias is None:  # the top keeps the convolution, the target gets the chain's
                    self.correlate(x, t.data, epilogue_map(self, None, None) + (ep.target.data,), W)
                    continue
                self.correlate(x, t.data, W=W)
            else:
                self.correlate(x, t.data, W=W)
            self._finish(t.data)

    def backward(self, top, propagate_down, bottom):
        with self.products("backward"):
            self._backward(top, propagate_down, bottom)

    def _backward(self, top, propagate_down, bottom):
        need_w = self.param_needs_grad(0)
        need_b = self.bias_term and self.param_needs_grad(1)
        W = None
        for i, (t, b) in enumerate(zip(top, bottom)):
            if need_b:  # a sum: float32 whatever the products' precision
                with self._timed("bias"):
                    self._bias_grad(t.diff, self.blobs[1].diff)
            dy = self._operand(t.diff, "backward", "dy")
            if need_w:
                x = self._operand(b.data, "backward", "x")
                if self.transposed:
                    self.weight_grad(dy, x, self.blobs[0].diff)
                else:
                    self.weight_grad(x, dy, self.blobs[0].diff)
            if i < len(propagate_down) and propagate_down[i]:
                if W is None:
                    W = self._operand(self.blobs[0].data, "backward", "w")
                if self.transposed:
                    self.correlate(dy, b.diff, W=W)
                else:
                    self.correlate_adjoint(dy, b.diff, W)
