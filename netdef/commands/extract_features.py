"""`netdef extract-features WEIGHTS MODEL BLOBS DBS N [lmdb|leveldb] [CPU|GPU] [DEVICE_ID]`:
Caffe's extract_features tool. The net MODEL (phase TEST, with the weights WEIGHTS) runs N
forward passes; after each, every item n of each blob in BLOBS (a comma list) becomes one
Datum of float_data in the database of the same place in DBS (a comma list of as many paths):
channels 1, height = the item's value count, width 1, keyed by its running index ("0", "1", ...:
Caffe's keys, which LMDB orders as text). The device is --gpu N / --cpu, or Caffe's trailing
CPU / GPU [DEVICE_ID]. The features are held in memory until the passes are done; then each
database is written (atomically: a temporary directory renamed).
"""
import logging
import os

import numpy as np

from .. import TEST
from ..data.datum import array_to_datum
from ..data.lmdb_data import BACKENDS, write_datums
from ..errors import NetdefError
from ..core.net import Net
from ._common import add_device_arguments, add_fuse_argument, select_device

log = logging.getLogger("netdef")

HELP = "run a net and write blobs' values to LMDB/LevelDB as Datums (Caffe's extract_features)"


def configure(p):
    p.add_argument("weights", help="the .caffemodel (comma list for several)")
    p.add_argument("model", help="the net .prototxt (built in phase TEST; its data layer gives the inputs)")
    p.add_argument("blobs", help="blob names, comma-separated")
    p.add_argument("dbs", help="a database path per blob, comma-separated")
    p.add_argument("iterations", type=int, help="number of forward passes (mini-batches)")
    p.add_argument("extra", nargs="*", metavar="[lmdb|leveldb] [CPU|GPU] [DEVICE_ID]",
                   help="Caffe's trailing arguments: the database type (default lmdb), the device")
    add_device_arguments(p)
    add_fuse_argument(p)


def _trailing(args):
    """(backend, gpu or None or 'cpu') from Caffe's positional db_type, CPU/GPU, DEVICE_ID."""
    backend, mode, device = "lmdb", None, None
    rest = list(args.extra)
    if rest and rest[0].lower() in BACKENDS:
        backend = rest.pop(0).lower()
    if rest and rest[0].upper() in ("CPU", "GPU"):
        mode = rest.pop(0).upper()
        if mode == "GPU" and rest and rest[0].isdigit():
            device = int(rest.pop(0))
    if rest:
        raise NetdefError(f"unexpected arguments {' '.join(rest)}: after N come [lmdb|leveldb] [CPU|GPU] [DEVICE_ID]")
    if mode is not None and (args.gpu is not None or args.cpu):
        raise NetdefError(f"the device is given twice: {mode} and --gpu/--cpu; give one")
    if mode == "GPU":
        args.gpu = str(device or 0)
    elif mode == "CPU":
        args.cpu = True
    return backend


def run(args):
    backend = _trailing(args)
    blobs = [b for b in args.blobs.split(",")]
    dbs = [d for d in args.dbs.split(",")]
    if len(blobs) != len(dbs):
        raise NetdefError(f"{len(blobs)} blob names ({args.blobs}) but {len(dbs)} databases ({args.dbs}); "
                          "give one database per blob")
    if any(not b for b in blobs) or any(not d for d in dbs):
        raise NetdefError("empty name in the blob or database list")
    if len(set(dbs)) != len(dbs):
        raise NetdefError(f"a database is named twice in {args.dbs}")
    if args.iterations < 1:
        raise NetdefError(f"N (the number of mini-batches) must be >= 1, got {args.iterations}")
    for db in dbs:  # before the passes, not after them
        if os.path.exists(db):
            raise NetdefError("the database already exists; remove it first", file=db)
    select_device(args)
    net = Net(args.model, TEST, fuse=args.fuse, forward_only=True)
    records = [[] for _ in blobs]
    try:
        for w in args.weights.split(","):
            if w:
                net.copy_from(w)
        for b in blobs:
            if b not in net.blobs:
                raise NetdefError(f"unknown feature blob '{b}' in the network; its blobs: "
                                  f"{', '.join(net.blobs)}", file=args.model)
        log.info("Extracting features")
        for _ in range(args.iterations):
            net.forward()
            for recs, name in zip(records, blobs, strict=True):
                data = net.blobs[name].data
                data = np.asarray(data.get() if hasattr(data, "get") else data, dtype=np.float32)
                if data.ndim == 0:
                    raise NetdefError(f"blob '{name}' is a scalar; extract-features needs a batch axis")
                for item in data.reshape(data.shape[0], -1):
                    recs.append((str(len(recs)), array_to_datum(item.reshape(1, -1, 1)).SerializeToString()))
                    if len(recs) % 1000 == 0:
                        log.info("Extracted features of %d query images for feature blob %s", len(recs), name)
    finally:
        net.close()  # the data layers' prefetch threads
    for recs, name, db in zip(records, blobs, dbs, strict=True):
        write_datums(db, recs, backend=backend)
        log.info("Extracted features of %d query images for feature blob %s", len(recs), name)
    log.info("Successfully extracted the features!")
    return 0
