"""pycaffe's caffe.Classifier and caffe.Detector: Nets that take images (H, W, K) in [0, 1].

    clf = Classifier('deploy.prototxt', 'weights.caffemodel', image_dims=(256, 256),
                     mean=np.array([104, 117, 123]), raw_scale=255, channel_swap=(2, 1, 0))
    probs = clf.predict([netdef.io.load_image('cat.jpg')])          # (N, classes)

    det = Detector('deploy.prototxt', 'weights.caffemodel', context_pad=16, ...)
    dets = det.detect_windows([('cat.jpg', [(ymin, xmin, ymax, xmax), ...])])
    # [{'window': ..., 'prediction': ..., 'filename': ...}, ...]

Contract, as pycaffe's: both are Nets in the TEST phase over the net's first input, with a
netdef.io.Transformer (self.transformer) set to transpose (2, 0, 1) and to the given mean,
input_scale, raw_scale and channel_swap. Classifier.predict resizes every image to image_dims
(default: the input's size), then takes pycaffe's 10 crops (netdef.io.oversample) of the input's
size and averages the predictions of each image's 10, or with oversample=False takes the centre
crop; the predictions are the net's first output, one row per image. Detector.detect_windows
loads each image, cuts each window out (windows are (ymin, xmin, ymax, xmax); with context_pad
the box is widened so that context_pad pixels of context surround it after warping, and the part
outside the image is filled with the mean, as R-CNN trained), warps it to the input size and
runs them. Inputs of any count are run in batches of the net's batch size (the last one padded).
detect_selective_search needs the selective_search_ijcv_with_python MATLAB package, which
netdef does not ship: it raises a NetdefError saying so.
"""
import numpy as np

from . import io
from ..core import netdef_pb2 as pb
from ..errors import NetdefError
from ..core.net import Net


def _configure(net, mean, input_scale, raw_scale, channel_swap):
    if not net.inputs:
        raise NetdefError("the net has no inputs (an Input layer or input: fields) to feed images to",
                          file=net.filename)
    if not net.outputs:
        raise NetdefError("the net has no outputs to read predictions from", file=net.filename)
    in_ = net.inputs[0]
    shape = net.blobs[in_].shape
    if len(shape) != 4:
        raise NetdefError(f"input '{in_}' has shape {shape}; images need an (N, K, H, W) input",
                          file=net.filename, blob=in_)
    t = io.Transformer({in_: shape})
    t.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        t.set_mean(in_, mean)
    if input_scale is not None:
        t.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        t.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        t.set_channel_swap(in_, channel_swap)
    return t


def _run_batches(net, caffe_in):
    """The first output for every row of caffe_in (N, K, H, W), run in the net's batch size."""
    in_ = net.inputs[0]
    out_name = net.outputs[0]
    batch = net.blobs[in_].shape[0]
    if caffe_in.shape[1:] != net.blobs[in_].shape[1:]:
        raise NetdefError(f"preprocessed inputs have shape {caffe_in.shape[1:]}, input '{in_}' "
                          f"takes {net.blobs[in_].shape[1:]}", blob=in_)
    rows = []
    for start in range(0, len(caffe_in), batch):
        chunk = caffe_in[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], chunk.dtype)])
        out = net.forward(**{in_: chunk})[out_name]
        rows.append(net.backend.to_numpy(out)[:n].copy())
    return np.concatenate(rows) if rows else np.zeros((0,), np.float32)


class Classifier(Net):
    """Net for classifying images (pycaffe's caffe.Classifier)."""

    def __init__(self, model_file, pretrained_file=None, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, pb.TEST, weights=pretrained_file)
        self.transformer = _configure(self, mean, input_scale, raw_scale, channel_swap)
        in_ = self.inputs[0]
        self.crop_dims = np.array(self.blobs[in_].shape[2:])
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        if len(image_dims) != 2 or any(int(d) < c for d, c in zip(image_dims, self.crop_dims)):
            raise NetdefError(f"image_dims {tuple(image_dims)} must be two sizes at least the input's "
                              f"{tuple(self.crop_dims)}", file=self.filename)
        self.image_dims = tuple(int(d) for d in image_dims)

    def predict(self, inputs, oversample=True):
        """Class predictions (N, ...) of the first output for images (H, W, K); with oversample
        the mean over 10 crops, else the centre crop."""
        inputs = list(inputs)
        if not inputs:
            raise NetdefError("Classifier.predict: no images")
        channels = np.asarray(inputs[0]).shape[2] if np.ndim(inputs[0]) == 3 else None
        if channels is None or any(np.ndim(im) != 3 or np.shape(im)[2] != channels for im in inputs):
            raise NetdefError("Classifier.predict: images must be (H, W, K) arrays with one channel "
                              f"count, got shapes {[np.shape(im) for im in inputs]}")
        resized = np.stack([io.resize_image(im, self.image_dims) for im in inputs])
        if oversample:
            crops = io.oversample(resized, self.crop_dims)
        else:
            ch, cw = (int(d) for d in self.crop_dims)
            i = int(np.floor(self.image_dims[0] / 2.0 - ch / 2.0))
            j = int(np.floor(self.image_dims[1] / 2.0 - cw / 2.0))
            crops = resized[:, i:i + ch, j:j + cw, :]
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        predictions = _run_batches(self, caffe_in)
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10) + predictions.shape[1:]).mean(1)
        return predictions


class Detector(Net):
    """Net for classifying windows of images (pycaffe's caffe.Detector, R-CNN style)."""

    def __init__(self, model_file, pretrained_file=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        super().__init__(model_file, pb.TEST, weights=pretrained_file)
        self.transformer = _configure(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def configure_crop(self, context_pad):
        """crop_dims (H, W, K) of the input, and the mean in image space for context padding."""
        in_ = self.inputs[0]
        shape = self.blobs[in_].shape
        self.crop_dims = np.array((shape[2], shape[3], shape[1]))
        self.context_pad = int(context_pad or 0)
        if self.context_pad and 2 * self.context_pad >= shape[3]:
            raise NetdefError(f"context_pad {self.context_pad} leaves no room in the input width {shape[3]}",
                              file=self.filename)
        t = self.transformer
        mean = t.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(tuple(self.crop_dims), np.float32)
            return
        # The mean lives in preprocessed space (K, H, W, swapped, scaled): undo the swap and
        # the raw scale, so that padding, once preprocessed, becomes exactly zero.
        crop_mean = np.array(mean, dtype=np.float32)
        if crop_mean.ndim == 2:  # an (H, W) mean, for every channel
            crop_mean = crop_mean[np.newaxis]
        if in_ in t.channel_swap and crop_mean.shape[0] > 1:
            crop_mean = crop_mean[list(np.argsort(t.channel_swap[in_]))]
        crop_mean = crop_mean.transpose(1, 2, 0)
        if in_ in t.raw_scale:
            crop_mean = crop_mean / t.raw_scale[in_]
        self.crop_mean = crop_mean

    def crop(self, im, window):
        """The window (ymin, xmin, ymax, xmax) of `im` (H, W, K); with context_pad the widened box,
        warped to the input size, mean-filled where it leaves the image."""
        window = np.asarray(window, dtype=np.float64)
        if window.shape != (4,):
            raise NetdefError(f"a window is (ymin, xmin, ymax, xmax), got {window.tolist()}")
        if not self.context_pad:
            y0, x0, y1, x1 = (int(v) for v in window)
            crop = im[max(y0, 0):y1, max(x0, 0):x1]
            if crop.size == 0:
                raise NetdefError(f"window {window.tolist()} is empty inside the image of size {im.shape[:2]}")
            return crop
        crop_size = int(self.crop_dims[1])  # R-CNN's inputs are square
        scale = crop_size / (1.0 * crop_size - self.context_pad * 2)
        half_h = (window[2] - window[0] + 1) / 2.0
        half_w = (window[3] - window[1] + 1) / 2.0
        center = (window[0] + half_h, window[1] + half_w)
        box = np.round(np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        scale_h = crop_size / (box[2] - box[0] + 1)
        scale_w = crop_size / (box[3] - box[1] + 1)
        pad_y = int(round(max(0.0, -box[0]) * scale_h))
        pad_x = int(round(max(0.0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise NetdefError(f"window {window.tolist()} lies outside the image of size {(im_h, im_w)}")
        crop_h = min(int(round(clip_h * scale_h)), crop_size - pad_y)
        crop_w = min(int(round(clip_w * scale_w)), crop_size - pad_x)
        by0, bx0, by1, bx1 = (int(v) for v in box)
        context = im[by0:by1, bx0:bx1]
        if context.size == 0 or crop_h <= 0 or crop_w <= 0:
            raise NetdefError(f"window {window.tolist()} leaves nothing of the image of size {(im_h, im_w)}")
        out = np.ones(tuple(self.crop_dims), dtype=np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = io.resize_image(context, (crop_h, crop_w))
        return out

    def detect_windows(self, images_windows):
        """[{'window', 'prediction', 'filename'}] for [(image filename, [windows])]."""
        images_windows = [(f, list(ws)) for f, ws in images_windows]
        in_ = self.inputs[0]
        crops = []
        for fname, windows in images_windows:
            image = io.load_image(fname)
            crops.extend(self.crop(image, w) for w in windows)
        if not crops:
            return []
        caffe_in = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        predictions = _run_batches(self, caffe_in)
        out, ix = [], 0
        for fname, windows in images_windows:
            for w in windows:
                out.append({"window": w, "prediction": predictions[ix], "filename": fname})
                ix += 1
        return out

    def detect_selective_search(self, image_fnames):
        raise NetdefError("detect_selective_search needs the selective_search_ijcv_with_python "
                          "package (MATLAB), which netdef does not provide; compute the windows "
                          "with any proposal method and call detect_windows([(file, windows)])")
