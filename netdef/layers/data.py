"""Data: Caffe's database input layer, batches of Datum records from LMDB (or LevelDB).

    layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
      transform_param { scale: 0.00390625 }
      data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB } }

Tops: data (N, C, H, W) and, optionally, label (N,), with N = batch_size and (C, H, W) the
records' size after transform_param's crop. Records are read in key order, one after another,
and the reading wraps around to the first record after the last (Caffe's cursor): batch b holds
records (b N + i) mod R of the R records, from a start that rand_skip moves forward by a random
count below rand_skip (drawn once, from the layer's seed).

Each record is a Datum (netdef.data.datum): raw uint8 pixels (C, H, W) in BGR order, float_data,
or an encoded image file (PNG, JPEG, ...) decoded with Pillow. Then transform_param, per record
(netdef.data.transform):
    x' = (crop(x) - mean) * scale,   mirrored left-right with probability 1/2 in TRAIN
with the crop random in TRAIN and centred in TEST, mean the per-channel mean_value(s) or the
mean_file (a .binaryproto of the records' size, cropped with the image). force_color /
force_gray decode encoded records as BGR / one channel; Caffe ignores them for raw records
(with an error line in its log), and so does netdef, with a warning. All records of a batch
must have one size (Caffe reshapes the tops to the first record of each batch).

data_param: source (the database directory, relative to the prototxt's directory or else the
working directory), batch_size, rand_skip, backend (LMDB; LEVELDB needs netdef[leveldb]; when
the field is left out the kind is told from the directory, where Caffe would assume LEVELDB),
prefetch (batches read ahead in a background thread). The deprecated data_param.scale /
mean_file / crop_size / mirror / force_encoded_color are refused: they belong in transform_param.
get_state()/set_state() give the cursor, which the solver's snapshots store, so a resumed run
reads the records an uninterrupted one would.
"""
import logging
import os

import numpy as np

from ..core import netdef_pb2 as pb
from ..data.base import EpochSampler, PrefetchingDataLayer, draw_seed
from ..data.datum import datum_to_array, parse_datum
from ..data.lmdb_data import key_text, open_db
from ..data.transform import (MOVED_TO_TRANSFORM, Transform, base_dir_of, layer_error,
                              refuse_moved_fields, resolve_path)
from ..errors import NetdefError
from . import register_layer

log = logging.getLogger("netdef")


class DatumReader:
    """produce(state) -> ([data, label], next_state): batch_size records from the state's
    position, transformed. Runs in the prefetch thread."""

    def __init__(self, db, batch_size, color, transform, sampler, skip, warn_raw_force):
        self.db, self.batch_size, self.color = db, batch_size, color
        self.transform, self.sampler, self.skip = transform, sampler, skip
        self.warn_raw_force = warn_raw_force

    def initial_state(self):
        return self.sampler.initial_state(self.skip)

    def _records(self, picks):
        """The (key, value) of each picked position, reading runs of consecutive ones at once."""
        out, i = [], 0
        while i < len(picks):
            j = i + 1
            while j < len(picks) and picks[j][0] == picks[j - 1][0] + 1:
                j += 1
            out.extend(self.db.read(picks[i][0], j - i))
            i = j
        return out

    def produce(self, state):
        picks, nxt = self.sampler.take(state, self.batch_size)
        images, labels = [], []
        for (key, value), (_, rng) in zip(self._records(picks), picks, strict=True):
            where = f"{self.db.path}, record '{key_text(key)}'"
            datum = parse_datum(value, where)
            if not datum.encoded and self.warn_raw_force:
                self.warn_raw_force = False
                log.warning("%s: transform_param.force_color/force_gray apply to encoded records "
                            "only; the raw records are used as they are (as in Caffe)", where)
            arr = datum_to_array(datum, self.color, where)
            try:
                out = self.transform(arr.transpose(1, 2, 0).astype(np.float32, copy=False), rng, source=where)
            except NetdefError as e:
                raise NetdefError(e.detail, file=where) from None
            if images and out.shape != images[0].shape:
                raise NetdefError(f"this record gives {'x'.join(map(str, out.shape))} (CxHxW) after "
                                  f"transform_param, the batch's first {'x'.join(map(str, images[0].shape))}; "
                                  "all records of a batch must have one size", file=where)
            images.append(out)
            labels.append(datum.label)
        return [np.stack(images), np.asarray(labels, dtype=np.float32)], nxt


@register_layer("Data")
class DataLayer(PrefetchingDataLayer):
    min_top = 1
    max_top = 2

    def make_reader(self, top):
        err = layer_error(self)
        dp = self.layer_param.data_param
        refuse_moved_fields(err, dp, "data_param", MOVED_TO_TRANSFORM + (("force_encoded_color", "force_color"),))
        if not dp.source:
            raise err("data_param.source (the database directory) is not set")
        if dp.batch_size < 1:
            raise err("data_param.batch_size must be >= 1")
        if dp.HasField("prefetch") and "NETDEF_PREFETCH" not in os.environ:
            self.prefetch_depth = int(dp.prefetch)
        base = base_dir_of(self)
        src = resolve_path(dp.source, base)
        backend = None
        if dp.HasField("backend"):
            backend = "lmdb" if dp.backend == pb.DataParameter.LMDB else "leveldb"
        tp = self.layer_param.transform_param
        transform = Transform(tp, self.phase, err, base)
        try:
            db = open_db(src, backend)
        except NetdefError as e:
            raise type(e)(f"data_param.source: {e.detail}", file=e.file, layer=self.name) from None
        color = True if tp.force_color else False if tp.force_gray else None
        seed = draw_seed(self)
        skip = int(np.random.default_rng([seed, 2]).integers(0, dp.rand_skip)) if dp.rand_skip else 0
        self.db = db
        reader = DatumReader(db, int(dp.batch_size), color, transform,
                             EpochSampler(len(db), False, seed), skip,
                             warn_raw_force=color is not None)
        # The channel count is the first record's: check the mean against it now, not in the thread.
        key, value = db.read(0, 1)[0]
        where = f"{db.path}, record '{key_text(key)}'"
        first = datum_to_array(parse_datum(value, where), color, where)
        transform.check_channels(first.shape[0], err)
        return reader
