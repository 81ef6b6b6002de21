"""BatchNorm: normalizes each channel (axis 1) to zero mean and unit variance, as Caffe does
(no learned scale or shift: ResNet follows it with a Scale layer with bias_term).

batch_norm_param { use_global_stats (unset: false in TRAIN, true in TEST)
                   moving_average_fraction maf (0.999)  eps (1e-5) }
Params, exactly as Caffe stores them (all zero at first):
   blob0 (C,)  running sum of batch means       blob1 (C,)  running sum of batch variances
   blob2 (1,)  the scale factor: the sum of the weights of those sums
They are statistics, not learned: the layer gives them lr_mult 0 itself (adding `param`
entries with lr_mult 0, as Caffe does; three given `param` entries are zeroed as Caffe's
upgrade of old nets does; a nonzero lr_mult on fewer is an error), and backward gives them no
gradient.

The bottom is seen as (N, C, S), S = the product of the axes after 1; m = N * S.
batch statistics (use_global_stats false):
   mu_c = mean of x over N and S,   var_c = mean of (x - mu_c)^2   (biased)
   and forward updates the running sums:
      blob2 = maf * blob2 + 1,  blob0 = maf * blob0 + mu,  blob1 = maf * blob1 + var * m / (m - 1)
      (the factor is 1 when m = 1)
global statistics (use_global_stats true):
   f = 0 if blob2 == 0 else 1 / blob2,   mu = f * blob0,   var = f * blob1
forward:  y = (x - mu_c) / sqrt(var_c + eps)
backward, batch statistics:  dx = (dy - mean(dy) - y * mean(dy * y)) / sqrt(var + eps)
          (means per channel over N and S; y is a copy kept by forward, because a later
          in-place layer may overwrite the top; kept only when the Net plans a backward)
backward, global statistics: dx = dy / sqrt(var + eps)
Forward is one pass y = a x + b with a = 1 / sqrt(var + eps), b = -mu a per channel (plus one
read of x for the batch statistics).
shape:    top = bottom (may be computed in place)
"""
from ..core.layer import TEST, Layer
from . import register_layer
from .scale import channel_affine, channel_epilogue


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1
    in_place_ok = True

    def setup(self, bottom, top):
        p = self.layer_param.batch_norm_param
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == TEST)
        self.maf = float(p.moving_average_fraction)
        self.eps = float(p.eps)
        shape = bottom[0].shape
        if len(shape) < 1:
            raise self.shape_error(f"bottom shape {shape} has no axes")
        self.channels = 1 if len(shape) == 1 else shape[1]
        self.blobs = [self.make_blob((self.channels,)), self.make_blob((self.channels,)),
                      self.make_blob((1,))]
        for b in self.blobs:
            b.data[...] = 0
        self._freeze_statistics()
        self.x_norm = None

    def _freeze_statistics(self):
        """lr_mult 0 for the three statistics blobs, in the layer's own LayerParameter (which the
        Net reads after setup to decide what the solver updates)."""
        params = self.layer_param.param
        if len(params) == 3:  # Caffe's UpgradeNetBatchNorm: old nets declared three params
            for spec in params:
                spec.lr_mult = 0
                spec.decay_mult = 0
            return
        for i, spec in enumerate(params):
            if spec.lr_mult != 0:
                raise self.error(f"param {i} has lr_mult {spec.lr_mult}: the batch statistics "
                                 "cannot be learned (give lr_mult: 0 or leave the param out)")
        while len(params) < len(self.blobs):
            params.add(lr_mult=0, decay_mult=0)

    def adapt_param(self, index, values):
        # the same number of values under another vector-like shape, e.g. (1, C, 1, 1)
        shape = self.blobs[index].shape
        if values.size == self.blobs[index].count and sum(d != 1 for d in values.shape) <= 1:
            return values.reshape(shape)
        return None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        C = 1 if len(shape) == 1 else (shape[1] if len(shape) > 1 else -1)
        if C != self.channels:
            raise self.shape_error(f"bottom shape {shape} does not have the {self.channels} channels "
                                   "(axis 1) the statistics were made for")
        if top[0] is not bottom[0]:
            top[0].reshape(shape)
        self.N = shape[0]
        self.S = bottom[0].count // max(self.N * self.channels, 1)
        xp = self.xp
        # per channel: the statistics, and the normalization y = a x + b (a = 1 / std)
        self.mean, self.var, self.a, self.b = (xp.empty(self.channels, dtype=self.dtype) for _ in range(4))

    def _keeps_normalized(self):
        """Does forward keep y for backward (batch statistics, and a backward can follow)?"""
        return not self.use_global_stats and self.need_backward

    def _partials(self, n_arrays):
        rows = self.N * self.channels
        parts = self.backend.reduce_parts(rows, self.S)
        return parts, [self.xp.empty(rows * parts, dtype=self.dtype) for _ in range(n_arrays)]

    def forward(self, bottom, top):
        k = self.kernels("batch_norm")
        x, y = bottom[0].data, top[0].data
        C, S, N = self.channels, self.S, self.N
        if self.use_global_stats:
            channel_epilogue(self, x, *self.channel_map(), y, C, S)
            return
        b0, b1, b2 = (b.data for b in self.blobs)
        m = N * S
        if m == 0:
            return
        parts, (psum, pm2) = self._partials(2)
        k.bn_partial_moments(N * C * parts, x, psum, pm2, S, parts)
        correction = m / (m - 1.0) if m > 1 else 1.0
        k.bn_batch_stats(C, psum, pm2, N, parts, S, self.mean, self.var, self.a, self.b, b0, b1, b2,
                         self.maf, correction, self.eps)
        if not self._keeps_normalized():
            self.x_norm = None
            channel_affine(self, x, self.a, self.b, y, C, S)
            return
        if self.x_norm is None or self.x_norm.shape != x.shape:
            self.x_norm = self.xp.empty(x.shape, dtype=self.dtype)
        iters, tile = self.row_launch(x.size, S)
        k.bn_normalize(iters, x, self.a, self.b, y, self.x_norm, C, S, tile)

    # With global statistics the layer is a per-channel map: the Net's inference fusion may fold
    # it into the layer before (a convolution's epilogue), or fold the maps after it into it.
    def affine_dims(self, bottom, top):
        if not self.use_global_stats or len(bottom[0].shape) < 2:
            return None
        return self.N, self.channels, self.S

    epilogue_dims = affine_dims

    def channel_map(self):
        """(a, b) = (1 / std, -mean / std) from the global statistics (also forward's own map)."""
        b0, b1, b2 = (b.data for b in self.blobs)
        self.kernels("batch_norm").bn_global_stats(self.channels, b0, b1, b2, self.mean, self.var,
                                                   self.a, self.b, self.eps)
        return self.a, self.b

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        C, S, N = self.channels, self.S, self.N
        if self.use_global_stats:
            channel_affine(self, dy, self.a, None, dx, C, S)
            return
        m = N * S
        if m == 0:
            return
        if self.x_norm is None:
            raise self.error("backward after a forward that kept nothing for it (the Net planned "
                             "no backward for this layer: use force_backward)")
        k = self.kernels("batch_norm")
        sk = self.kernels("scale")
        parts, (psum, pdot) = self._partials(2)
        k.bn_partial_grad(N * C * parts, dy, self.x_norm, psum, pdot, S, parts)
        mean_dy = self.xp.empty(C, dtype=self.dtype)
        mean_dyx = self.xp.empty(C, dtype=self.dtype)
        sk.reduce_partials(C, psum, mean_dy, N, parts, 1.0 / m, 0.0)
        sk.reduce_partials(C, pdot, mean_dyx, N, parts, 1.0 / m, 0.0)
        iters, tile = self.row_launch(dy.size, S)
        k.bn_backward(iters, dy, self.x_norm, mean_dy, mean_dyx, self.a, dx, C, S, tile)
