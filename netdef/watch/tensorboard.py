"""TensorBoard event files of a training run, written with tensorboardX (no PyTorch, no
TensorFlow): `netdef train ... --tensorboard DIR`, or from Python

    solver = netdef.get_solver('solver.prototxt')
    with TensorBoardMonitor(solver, 'runs/fcn8s-mini'):
        solver.solve()

Contract:
  * Scalars, at step = the solver's iteration:
      train/loss, train/smoothed_loss, train/lr       every `every` iterations (default 1);
      test<i>/<output>   each Test net output after a complete test (an output with several
                         values: test<i>/<output>/<k>);
      test<i>/pixel_accuracy, mean_accuracy, mean_iu, fw_iu   for a segmentation test net.
  * Images, after each test of a segmentation net: up to `images` (default 4) samples of the
    test's last batch, test<i>/sample_<k>: the input | the ground truth | the prediction (the
    score's arg-max), the labels drawn over the image in PASCAL VOC's colours (LABEL_ALPHA).
    The input is shown contrast-stretched (the net sees it mean-subtracted), 3 channels read as
    BGR as Caffe's data layers give them. The last batch is the same images at every test when
    test_iter x batch_size covers the validation set (as in models/).
  * Hooks: solver.add_callback (train scalars) and solver.add_test_callback (tests); nothing
    is computed on the nets that training would not compute, so a run with the monitor logs
    the same numbers as one without.
  * The writer is opened at the first event, with purge_step = that iteration when it is > 0:
    a run resumed into the same DIR hides what an interrupted run wrote after the snapshot.
    Events are flushed after every test and at close().
  * tensorboardX is an optional extra: pip install 'netdef[tensorboard]' (TensorBoard itself,
    to view the files, is the `tensorboard` package).
"""
import logging
import time

import numpy as np

from ..errors import NetdefError
from ..fcn.metrics import find_segmentation_blobs
from ..fcn.segment import overlay

log = logging.getLogger("netdef")

#: weight of the label colours over the image: the VOC colours are dark, and the synthetic set's
#: shapes bright, so an even blend hides the labels
LABEL_ALPHA = 0.65


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise NetdefError("--tensorboard needs tensorboardX: pip install 'netdef[tensorboard]'") from None
    return SummaryWriter


def _stretch(image):
    """(C, H, W) float -> (H, W, 3) uint8 RGB, min..max onto 0..255."""
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(image)
    if image.shape[0] == 3:
        rgb = scaled[::-1]
    else:
        rgb = np.repeat(scaled[:1], 3, axis=0)
    return rgb.transpose(1, 2, 0).astype(np.uint8)


def sample_panel(image, label, prediction, gap=2):
    """(H, W*3 + 2*gap, 3) uint8: the image | ground truth over it | prediction over it.
    image: (C, H, W) as the net sees it; label and prediction: (H, W) integer maps."""
    rgb = _stretch(image)
    bgr = rgb[:, :, ::-1].astype(np.float32)
    cells = [rgb, overlay(bgr, label, LABEL_ALPHA), overlay(bgr, prediction, LABEL_ALPHA)]
    h = rgb.shape[0]
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    return np.concatenate([cells[0], sep, cells[1], sep, cells[2]], axis=1)


class TensorBoardMonitor:
    """Writes a Solver's scalars and validation predictions to TensorBoard event files."""

    def __init__(self, solver, logdir, images=4, every=1):
        self._writer_class = _summary_writer()
        self.solver, self.logdir = solver, str(logdir)
        self.images, self.every = int(images), max(1, int(every))
        self.writer = None
        self._image_notes = set()
        solver.add_callback(on_gradients_ready=self._on_train)
        solver.add_test_callback(self._on_test)

    def _open(self):
        if self.writer is None:
            step = self.solver.iter
            try:
                # tensorboardX names files by the second; a resumed run started within the same
                # second would overwrite the first run's file, and TensorBoard reads files in name
                # order, so the suffix keeps them apart and in order
                self.writer = self._writer_class(self.logdir, purge_step=step if step > 0 else None,
                                                 filename_suffix=f".{time.time_ns()}")
            except OSError as e:
                raise NetdefError(f"cannot write TensorBoard events: {e.strerror}", file=self.logdir) from None
            log.info("Writing TensorBoard events to %s", self.logdir)
        return self.writer

    def _on_train(self):
        s = self.solver
        if s.iter % self.every:
            return
        w = self._open()
        w.add_scalar("train/loss", float(s.losses[-1]), s.iter)
        w.add_scalar("train/smoothed_loss", float(s.smoothed_loss), s.iter)
        w.add_scalar("train/lr", float(s.learning_rate), s.iter)

    def _on_test(self, i, evaluation):
        w, step = self._open(), self.solver.iter
        for name, values in evaluation.outputs:
            if values is None:
                continue
            if len(values) == 1:
                w.add_scalar(f"test{i}/{name}", float(values[0]), step)
            else:
                for k, v in enumerate(values):
                    w.add_scalar(f"test{i}/{name}/{k}", float(v), step)
        if evaluation.segmentation is not None:
            for key in ("pixel_accuracy", "mean_accuracy", "mean_iu", "fw_iu"):
                w.add_scalar(f"test{i}/{key}", float(evaluation.segmentation[key]), step)
            if self.images > 0:
                for k, panel in enumerate(self._samples(i)):
                    w.add_image(f"test{i}/sample_{k}", panel, step, dataformats="HWC")
        w.flush()

    def _note(self, i, message):
        if i not in self._image_notes:
            self._image_notes.add(i)
            log.info("TensorBoard: no prediction images for test net #%d: %s", i, message)

    def _samples(self, i):
        """The panels of the test net's last batch (see the module's contract)."""
        net = self.solver.test_nets[i]
        blobs = find_segmentation_blobs(net)
        if blobs is None:
            return []
        source = next((tops[0] for tops in net.top_names.values() if blobs.label in tops[1:]), None)
        if source is None and net.inputs:
            source = net.inputs[0]
        if source is None:
            self._note(i, "no data layer produces the label blob next to an image")
            return []
        to_np = net.backend.to_numpy
        data = to_np(net.blobs[source].data)
        label = to_np(net.blobs[blobs.label].data)
        score = to_np(net.blobs[blobs.score].data)
        if data.ndim != 4 or data.shape[1] not in (1, 3) or score.ndim != 4 or \
                data.shape[2:] != score.shape[2:] or label.size != score.shape[0] * score.shape[2] * score.shape[3]:
            self._note(i, f"image '{source}' {data.shape}, label {label.shape} and score {score.shape} "
                          "are not one (N, 1|3, H, W) image, label and score per sample")
            return []
        label = label.reshape(score.shape[0], *score.shape[2:]).astype(np.int64)
        label = np.where((label >= 0) & (label < 256), label, 255)
        prediction = score.argmax(axis=1)
        return [sample_panel(data[n], label[n], prediction[n]) for n in range(min(self.images, len(data)))]

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
