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
  * depthwise (group == Ci == Co, e.g. FCN's bilinear upsampling): direct kernels
    dw_conv_* of kernels/im2col.cu, no GEMM at all;
  * 1x1 kernel, stride 1, pad 0: the image *is* its column matrix: one batched GEMM;
  * otherwise im2col / col2im (kernels/im2col.cu) into a workspace shared by all layers of a
    device and dtype, then one matmul over a (images, group, ...) view. Images are taken
    together as long as their column matrices fit in COL_BUDGET elements (CPU_COL_BUDGET on the
    CPU); a single image whose column matrix is larger is processed in bands of output rows.
On the CPU the products that accumulate (dW +=, db +=) or write a band of rows go straight to
BLAS's GEMM (netdef/backend/blas.py) with beta = 1 / a leading dimension, so a train step
allocates nothing the size of a weight or an output; the bias gradient is a GEMV with a vector of
ones; and a GEMV-like backward-data product (few output pixels, many weights: fc6/fc7 at batch
1) is computed transposed. The GPU runs the same products as batched CuPy matmuls.
ConvolutionParameter.engine and force_nd_im2col only choose an implementation in Caffe; netdef
accepts them and always uses the paths above (the results are the same).
"""
import contextlib
import math
import time

import numpy as np

from ..backend import blas
from ..fillers import fill
from ..layer import Layer

#: Most elements the column workspace may hold for one chunk of images (or one band of rows).
COL_BUDGET = 1 << 25
#: The CPU's cap on it: bands of 16 MB cost no measurable time on FCN-8s (its conv1_2 column
#: matrix alone is 245 MB at 128x128), and save ~110 MB over 1 << 25. The GPU keeps COL_BUDGET:
#: there fewer, larger GEMMs and launches pay.
CPU_COL_BUDGET = 1 << 22
#: When set to a dict, seconds spent per phase ('im2col', 'col2im', 'gemm', 'depthwise',
#: 'bias') accumulate in it, with the device synchronised around each phase (bench/conv.py).
PROFILE = None

#: Multiply-adds below which the CPU keeps numpy's matmul (+ a small temporary): a direct BLAS
#: call through ctypes costs ~10 µs, a tiny matmul ~2 µs (per-layer dispatch on small nets).
SMALL_PRODUCT = 1 << 16

#: Most elements of the temporary product that an accumulating matmul_into takes at once
#: where it cannot accumulate in place (the GPU).
ACCUMULATE_TEMP = 1 << 22

_NULL = contextlib.nullcontext()
_workspaces = {}
_ones = {}


def workspace(backend, dtype, size, name="col"):
    """A flat scratch array of `size` elements, shared by every conv layer of one backend and
    dtype (layers run one at a time, and no layer keeps its contents between calls); `name`
    tells apart scratch arrays that one call needs at the same time."""
    key = (id(backend), np.dtype(dtype).str) if name == "col" else (id(backend), np.dtype(dtype).str, name)
    buf = _workspaces.get(key)
    if buf is None or buf.size < size:
        _workspaces.pop(key, None)
        buf = _workspaces[key] = backend.xp.empty(max(size, 1), dtype=dtype)
    return buf[:size]


def ones(backend, dtype, size):
    """A read-only vector of `size` ones (bias gradients as a GEMV), shared like workspace()."""
    key = (id(backend), np.dtype(dtype).str)
    buf = _ones.get(key)
    if buf is None or buf.size < size:
        buf = _ones[key] = backend.xp.ones(max(size, 1), dtype=dtype)
    return buf[:size]


def matmul_into(backend, a, b, out, accumulate=False):
    """out = a @ b, or out += a @ b, over the leading (batch) axes of out; `a` and `b` may have
    fewer leading axes (broadcast). Nothing the size of out is allocated on the CPU: accumulation
    goes to BLAS's GEMM with beta = 1, and a strided out (a band of rows) is written in place.
    On the GPU the accumulation adds products of at most ACCUMULATE_TEMP elements, block of
    rows by block of rows (cupy.cublas.gemm with beta = 1 would need none; not done without a
    device to test it on)."""
    xp = backend.xp
    if (backend.name == "cpu" and (accumulate or not out.flags.c_contiguous)
            and out.size * a.shape[-1] > SMALL_PRODUCT):
        beta = 1.0 if accumulate else 0.0
        lead = out.shape[:-2]
        na, nb = a.ndim - 2, b.ndim - 2
        for idx in np.ndindex(*lead):
            blas.gemm(a[idx[len(idx) - na:]] if na else a, b[idx[len(idx) - nb:]] if nb else b,
                      out[idx], beta=beta)
        return out
    if accumulate:
        # a bounded temporary, row block by row block: fc6's weight gradient would otherwise
        # take a 411 MB product (kept by CuPy's pool) next to the 411 MB gradient itself
        m = out.shape[-2]
        rows = max(1, ACCUMULATE_TEMP // max(1, out.size // m))
        for r0 in range(0, m, rows):
            out[..., r0:r0 + rows, :] += xp.matmul(a[..., r0:r0 + rows, :], b)
    elif out.flags.c_contiguous:
        xp.matmul(a, b, out=out)
    else:
        out[...] = xp.matmul(a, b)
    return out


class _Timed:
    def __init__(self, backend, phase):
        self.backend, self.phase = backend, phase

    def __enter__(self):
        self.backend.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.backend.synchronize()
        PROFILE[self.phase] = PROFILE.get(self.phase, 0.0) + time.perf_counter() - self.t0


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
    #: Tests turn the depthwise and 1x1 shortcuts off to run the general im2col path.
    fast_paths = True

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
        if self.fast_paths and G == self.Ci == self.Co:
            self.path = "depthwise"
        elif (self.fast_paths and self.kh == self.kw == 1 and self.sh == self.sw == 1
              and self.ph == self.pw == 0):
            self.path = "1x1"
        else:
            self.path = "im2col"
        per_image = max(self.K * self.L, self.Co * self.K // G)
        budget = min(COL_BUDGET, CPU_COL_BUDGET) if self.backend.name == "cpu" else COL_BUDGET
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
        return _Timed(self.backend, phase) if PROFILE is not None else _NULL

    # ---- the three products -------------------------------------------------------------
    def _weights_g(self, W):
        G = self.group
        return W.reshape(G, self.Co // G, self.K // G)

    def _im2col(self, img, n0, nb, oh0, rows):
        """Column matrices of images n0 .. n0 + nb - 1, output rows oh0 .. oh0 + rows - 1,
        as a (nb, group, K / group, rows * OW) view of the workspace."""
        G = self.group
        col = workspace(self.backend, self.dtype, nb * self.K * rows * self.OW)
        iters, tile = self.row_launch(nb * self.K * rows * self.OW, self.OW)
        with self._timed("im2col"):
            self.kernels("im2col").im2col(
                iters, img[n0:n0 + nb], col, self.Ci, self.IH, self.IW,
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
                iters, col, img[n0:n0 + nb], self.Ci, self.IH, self.IW,
                self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, self.OW,
                oh0, rows, h0, hrows, self.steph, self.stepw, tile, acc)

    def _dw_args(self):
        return (self.Ci, self.IH, self.IW, self.OH, self.OW, self.kh, self.kw, self.sh, self.sw,
                self.ph, self.pw, self.dh, self.dw)

    def correlate(self, img, out):
        """out (N, Co, OH, OW) = W * im2col(img), img (N, Ci, IH, IW)."""
        xp, G, N = self.xp, self.group, img.shape[0]
        W = self.blobs[0].data
        if self.path == "depthwise":
            with self._timed("depthwise"):
                self.kernels("im2col").dw_conv_forward(out.size, img, W, out, *self._dw_args())
            return
        Wg = self._weights_g(W)
        out4 = out.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                xp.matmul(Wg, img.reshape(N, G, self.K // G, self.L), out=out4)
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = self._im2col(img, n0, nb, oh0, rows)
            with self._timed("gemm"):
                matmul_into(self.backend, Wg, col, out4[n0:n0 + nb, :, :, oh0 * self.OW:(oh0 + rows) * self.OW])

    def correlate_adjoint(self, cols, img):
        """img (N, Ci, IH, IW) = col2im(W^T cols), cols (N, Co, OH, OW): written, not added."""
        xp, G, N = self.xp, self.group, img.shape[0]
        W = self.blobs[0].data
        if self.path == "depthwise":
            iters, tile = self.row_launch(img.size, self.IW)
            with self._timed("depthwise"):
                self.kernels("im2col").dw_conv_backward(
                    iters, cols, W, img, *self._dw_args(),
                    self.steph, self.stepw, tile)
            return
        WgT = self._weights_g(W).transpose(0, 2, 1)
        cols4 = cols.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                self._adjoint_product(WgT, cols4, img.reshape(N, G, self.K // G, self.L))
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = workspace(self.backend, self.dtype, nb * self.K * rows * self.OW)
            col = col.reshape(nb, G, self.K // G, rows * self.OW)
            with self._timed("gemm"):
                if rows == self.OH:
                    self._adjoint_product(WgT, cols4[n0:n0 + nb], col)
                else:
                    xp.matmul(WgT, cols4[n0, :, :, oh0 * self.OW:(oh0 + rows) * self.OW], out=col[0])
            self._col2im(col, img, n0, nb, oh0, rows)

    #: The CPU computes W^T c as (c^T W)^T when W has at least this many elements and c's
    #: columns are few (FCN's fc6 / fc7 at batch 1: 25 columns, 100M weights): BLAS then streams
    #: W once as the wide operand (fc6's backward-data GEMM 91 -> 70 ms on 2 cores).
    transposed_adjoint_min_weights = 1 << 22

    def _adjoint_product(self, WgT, c, out):
        """out (nb, G, K / G, l) = WgT (G, K / G, Co / G) @ c (nb, G, Co / G, l)."""
        nb, G, m, l = out.shape
        if (self.backend.name != "cpu" or WgT[0].size < self.transposed_adjoint_min_weights
                or 16 * l > m):
            self.xp.matmul(WgT, c, out=out)
            return
        scratch = workspace(self.backend, self.dtype, l * m, "adjoint").reshape(l, m)
        for i in range(nb):
            for g in range(G):
                blas.gemm(c[i, g].T, WgT[g].T, scratch)
                out[i, g] = scratch.T

    def weight_grad(self, img, cols, dW):
        """dW (Co, Ci / group, kh, kw) += cols * im2col(img)^T, summed over the images."""
        xp, G, N = self.xp, self.group, img.shape[0]
        if self.path == "depthwise":
            taps = self.Co * self.kh * self.kw
            target = 1 << 16
            parts = max(1, min(N * self.OH, -(-target // taps)))
            partial = workspace(self.backend, self.dtype, taps * parts)
            with self._timed("depthwise"):
                self.kernels("im2col").dw_conv_weight_partial(
                    taps * parts, img, cols, partial, N, *self._dw_args(), parts)
                dW += partial.reshape(dW.shape + (parts,)).sum(axis=-1)
            return
        dWg = self._weights_g(dW)
        cols4 = cols.reshape(N, G, self.Co // G, self.L)
        if self.path == "1x1":
            with self._timed("gemm"):
                img4 = img.reshape(N, G, self.K // G, self.L)
                self._accumulate_over_images(cols4, img4.transpose(0, 1, 3, 2), dWg)
            return
        for n0, nb, oh0, rows in self._chunks(N):
            col = self._im2col(img, n0, nb, oh0, rows)
            with self._timed("gemm"):
                c = cols4[n0:n0 + nb, :, :, oh0 * self.OW:(oh0 + rows) * self.OW]
                self._accumulate_over_images(c, col.transpose(0, 1, 3, 2), dWg)

    #: The CPU takes a weight gradient (G, m, n) += a @ b as its transpose when it has at most
    #: this many rows m (output channels per group) and fewer rows than columns: OpenBLAS runs
    #: products of few rows and a long inner dimension slowly, and the transpose turns the long
    #: side into rows (fcn8s-mini's conv1_2, 8 x 72 over 58k pixels: 3.4 -> 1.8 ms per band;
    #: VGG's 128-channel convs ~30 % faster). Above it, adding the transposed scratch back costs
    #: more than it saves.
    transposed_grad_max_rows = 128

    def _accumulate_over_images(self, a, b, out):
        """out (G, m, n) += sum over the images i of a[i] @ b[i] (a: (nb, G, m, k))."""
        nb, G, m, k = a.shape
        n = out.shape[-1]
        small = nb * out.size * k <= SMALL_PRODUCT
        if self.backend.name == "cpu" and not small and m < n and m <= self.transposed_grad_max_rows:
            scratch = workspace(self.backend, self.dtype, G * n * m, "wgrad").reshape(G, n, m)
            for g in range(G):
                for i in range(nb):
                    blas.gemm(b[i, g].T, a[i, g].T, scratch[g], beta=1.0 if i else 0.0)
            out += scratch.transpose(0, 2, 1)
            return
        if (self.backend.name == "cpu" and not small) or nb == 1:
            for i in range(nb):
                matmul_into(self.backend, a[i], b[i], out, accumulate=True)
        else:
            out += self.xp.matmul(a, b).sum(axis=0)

    # ---- forward / backward -------------------------------------------------------------
    def _add_bias(self, y):
        if self.bias_term:
            with self._timed("bias"):
                y += self.blobs[1].data.reshape(1, -1, 1, 1)

    def _bias_grad(self, dy, db):
        """db += sum over images and pixels of dy (N, C, H, W): on the CPU one GEMV per image."""
        if self.backend.name != "cpu" or dy.size <= SMALL_PRODUCT:
            db += dy.sum(axis=(0, 2, 3))
            return
        n, c = dy.shape[:2]
        hw = dy.size // max(n * c, 1)
        one = ones(self.backend, self.dtype, hw).reshape(hw, 1)
        for i in range(n):
            blas.gemm(dy[i].reshape(c, hw), one, db.reshape(c, 1), beta=1.0)

    def forward(self, bottom, top):
        for b, t in zip(bottom, top):
            if self.transposed:
                self.correlate_adjoint(b.data, t.data)
            else:
                self.correlate(b.data, t.data)
            self._add_bias(t.data)

    def backward(self, top, propagate_down, bottom):
        need_w = self.param_needs_grad(0)
        need_b = self.bias_term and self.param_needs_grad(1)
        for i, (t, b) in enumerate(zip(top, bottom)):
            dy = t.diff
            if need_b:
                with self._timed("bias"):
                    self._bias_grad(dy, self.blobs[1].diff)
            if need_w:
                if self.transposed:
                    self.weight_grad(dy, b.data, self.blobs[0].diff)
                else:
                    self.weight_grad(b.data, dy, self.blobs[0].diff)
            if i < len(propagate_down) and propagate_down[i]:
                if self.transposed:
                    self.correlate(dy, b.diff)
                else:
                    self.correlate_adjoint(dy, b.diff)
