"""SPP: spatial pyramid pooling of an (N, C, H, W) bottom into a fixed-length vector per image.

spp_param { pyramid_height  pool (MAX | AVE)  engine (accepted, one implementation) }
Level l = 0 .. pyramid_height - 1 pools the whole image into about 2^l x 2^l bins with
Caffe's choice of Pooling geometry (per axis, here for the height; likewise the width):
    bins = 2^l,  kh = ceil(H / bins),  pad_h = (kh bins - H + 1) // 2 (integer),  sh = kh
and the output length of Pooling (pooling.pooled_size, ceil mode with its padding rule), so a
level gives PH_l x PW_l bins (PH_l = bins unless the padding rule drops the last window).
forward:  level outputs as in Pooling (MAX: the window's maximum; AVE: the sum over the window
          clipped to the image divided by its extent within the padded plane), each flattened
          to (N, C PH_l PW_l) and concatenated along axis 1, level 0 first.
backward: dx = sum over levels of that level's Pooling backward (MAX: dy to the argmax;
          AVE: dy / size to every pixel of the window)
shape:    pyramid_height 1: top = (N, C, 1, 1), level 0's Pooling top itself (as Caffe);
          otherwise top = (N, sum_l C PH_l PW_l).
Built on kernels/pooling.cu's MAX and AVE kernels and slice.py's copy_piece (gather.cu's
copy_block) for the concatenation. Like Caffe's Pooling, a level whose pad is not smaller than its kernel (e.g.
H = 5 at 4 bins: kernel 2, pad 2) is an error; STOCHASTIC pooling is refused (its kernels
take no padding, which every level but the first needs in general).
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer
from .pooling import pooled_size
from .slice import copy_piece

S = pb.SPPParameter


def level_geometry(level, H, W):
    """(kh, kw, sh, sw, ph, pw) of pyramid level `level` for an H x W image (Caffe's formula)."""
    bins = 2 ** level
    kh, kw = -(-H // bins), -(-W // bins)
    ph, pw = (kh * bins - H + 1) // 2, (kw * bins - W + 1) // 2
    return kh, kw, kh, kw, ph, pw


@register_layer("SPP")
class SPPLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.spp_param
        if not p.HasField("pyramid_height") or p.pyramid_height < 1:
            raise self.error("spp_param.pyramid_height must be given and >= 1, got "
                             f"{p.pyramid_height if p.HasField('pyramid_height') else 'none'}")
        if p.pool not in (S.MAX, S.AVE):
            raise self.error(f"spp_param.pool {S.PoolMethod.Name(p.pool)} is not supported; use MAX "
                             "or AVE (stochastic pooling takes no padding)")
        self.height = int(p.pyramid_height)
        self.method = p.pool
        self.masks = {}

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.shape_error(f"bottom shape {shape} is not 4-D (num, channels, height, width)")
        N, C, H, W = shape
        if H <= 0 or W <= 0:
            raise self.shape_error(f"bottom shape {shape}: height and width must be > 0")
        self.levels = []
        offset = 0
        for level in range(self.height):
            kh, kw, sh, sw, ph, pw = level_geometry(level, H, W)
            if ph >= kh or pw >= kw:
                raise self.shape_error(
                    f"pyramid level {level} ({2 ** level} bins) of a {H} x {W} bottom needs kernel "
                    f"{kh} x {kw} with pad {ph} x {pw}, but Pooling's pad must be smaller than its "
                    f"kernel; use a larger input or pyramid_height <= {level}")
            any_pad = ph > 0 or pw > 0
            PH, PW = pooled_size(H, kh, sh, ph, True, any_pad), pooled_size(W, kw, sw, pw, True, any_pad)
            geom = (H, W, PH, PW, kh, kw, sh, sw, ph, pw)
            width = C * PH * PW
            self.levels.append((geom, offset, width))
            offset += width
            if self.method == S.MAX:
                mask = self.masks.get(level)
                if mask is None or mask.shape != (N, C, PH, PW):
                    self.masks[level] = self.xp.empty((N, C, PH, PW), dtype=self.xp.int64)
        self.total = offset
        self.N, self.C = N, C
        if self.height == 1:
            geom = self.levels[0][0]
            top[0].reshape(N, C, geom[2], geom[3])
        else:
            top[0].reshape(N, self.total)

    def _pool(self, level, x, y):
        geom = self.levels[level][0]
        k = self.kernels("pooling")
        if self.method == S.MAX:
            iters, tile, rows = self.plane_launch(self.N * self.C, geom[2], geom[3])
            k.max_pool_forward(iters, x, y, self.masks[level], *geom, tile, rows, 1)
        else:
            iters, tile = self.row_launch(self.N * self.C * geom[2] * geom[3], geom[3])
            k.ave_pool_forward(iters, x, y, *geom, tile)

    def _unpool(self, level, dy, dx):
        geom = self.levels[level][0]
        iters, tile = self.row_launch(self.N * self.C * geom[0] * geom[1], geom[1])
        k = self.kernels("pooling")
        if self.method == S.MAX:
            k.max_pool_backward(iters, dy, self.masks[level], dx, *geom, tile)
        else:
            k.ave_pool_backward(iters, dy, dx, *geom, tile)

    def _block(self, top, scratch, level, to_top):
        """Level `level`'s (N, width) output between its scratch and its columns of the top."""
        _, offset, width = self.levels[level]
        copy_piece(self, top, scratch, self.N, self.total, offset, width, to_piece=not to_top)

    def forward(self, bottom, top):
        if self.height == 1:
            self._pool(0, bottom[0].data, top[0].data)
            return
        for level, (_, _, width) in enumerate(self.levels):
            out = self.backend.workspace(self.dtype, self.N * width, "spp_level")
            self._pool(level, bottom[0].data, out)
            self._block(top[0].data, out, level, True)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        if self.height == 1:
            self._unpool(0, top[0].diff, dx)
            return
        part = self.backend.workspace(self.dtype, bottom[0].count, "spp_dx").reshape(dx.shape)
        for level, (_, _, width) in enumerate(self.levels):
            dy = self.backend.workspace(self.dtype, self.N * width, "spp_level")
            self._block(top[0].diff, dy, level, False)
            # level 0 writes dx; the others add theirs through a scratch (the kernels write)
            self._unpool(level, dy, dx if level == 0 else part)
            if level:
                self.kernels("eltwise").eltwise_axpby(dx.size, part, 1.0, dx, 1.0)
