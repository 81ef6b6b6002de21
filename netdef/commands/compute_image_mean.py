"""`netdef compute-image-mean DB [mean.binaryproto]`: the per-pixel mean of a database's records,
as Caffe's compute_image_mean computes it: a (1, C, H, W) BlobProto (written with the legacy
num/channels/height/width fields, as Caffe writes it) that transform_param.mean_file reads.
Every record must have the first one's size; encoded records are decoded (gray stays one
channel, colour is BGR). The per-channel means are printed too (for mean_value).
"""
import logging

import numpy as np

from ..data.datum import datum_to_array, parse_datum, write_binaryproto
from ..data.lmdb_data import BACKENDS, key_text, open_db
from ..errors import NetdefError

log = logging.getLogger("netdef")

HELP = "the mean image of a database of Datums, as a .binaryproto (Caffe's compute_image_mean)"


def configure(p):
    p.add_argument("db", help="the database (a directory)")
    p.add_argument("output", nargs="?", help="the mean.binaryproto to write (default: only print "
                   "the per-channel means)")
    p.add_argument("--backend", type=str.lower, choices=BACKENDS, default=None,
                   help="default: told from the directory's files")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def image_mean(db, progress=False):
    """The float64 (C, H, W) mean of the records of a DBReader."""
    from tqdm import tqdm

    total, shape, n = None, None, 0
    for key, value in tqdm(db.items(), total=len(db), unit="rec", disable=not progress, leave=False):
        where = f"{db.path}, record '{key_text(key)}'"
        arr = datum_to_array(parse_datum(value, where), where=where)
        if total is None:
            shape = arr.shape
            total = np.zeros(shape, dtype=np.float64)
        elif arr.shape != shape:
            raise NetdefError(f"the record is {'x'.join(map(str, arr.shape))} (CxHxW), the first "
                              f"{'x'.join(map(str, shape))}; a mean needs one size", file=where)
        total += arr
        n += 1
        if n % 10000 == 0:
            log.info("Processed %d files.", n)
    log.info("Processed %d files.", n)
    return total / n


def run(args):
    db = open_db(args.db, args.backend)
    mean = image_mean(db, args.progress)
    if args.output:
        write_binaryproto(args.output, mean[np.newaxis].astype(np.float32))
        log.info("Write to %s", args.output)
    for c, v in enumerate(mean.reshape(mean.shape[0], -1).mean(axis=1)):
        log.info("mean_value channel [%d]: %s", c, f"{v:.6g}")
    return 0
