"""Fuzzing the database path: damaged Datum records (raw, float and encoded), .binaryproto
files and LMDB records read by the Data layer must decode or raise a NetdefError, and a
declared size must be checked before anything of that size is allocated.

Seeds are written by netdef itself (netdef.data.datum). Mutators: fuzzlib's blind bytes and
wire-aware ones, and message-level ones (sizes huge / negative / zero, encoded flipped, payload
lengths changed, data moved between the raw and float fields, legacy shapes).
"""
import io
import os

import numpy as np
import pytest

import fuzzlib
from fuzzlib import fuzz_budget  # noqa: F401  (autouse: budget, seed, data dir)
import netdef
from netdef import io as nio
from netdef import netdef_pb2 as pb
from netdef.data import datum as dt
from netdef.data.transform import Transform, layer_error, read_mean_file

HUGE = [2**31 - 1, 2**30, 2**16, -1, -(2**31), 0, 1, 3]



def _image_bytes(arr, fmt):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _datum_seeds():
    rng = np.random.default_rng(0)
    raw = dt.array_to_datum(rng.integers(0, 256, (3, 4, 5), dtype=np.uint8), label=7)
    flt = dt.array_to_datum(np.linspace(-1, 1, 20, dtype=np.float32).reshape(1, 4, 5), label=2)
    png = dt.encoded_datum(_image_bytes(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), "PNG"), 1)
    jpg = dt.encoded_datum(_image_bytes(rng.integers(0, 256, (6, 5), dtype=np.uint8), "JPEG"), 0)
    return {"raw": raw, "float": flt, "png": png, "jpeg": jpg}


def _blob_seeds():
    legacy = dt.array_to_blobproto(np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5), legacy=True)
    shaped = dt.array_to_blobproto(np.ones((3, 4, 5), np.float32))
    double = pb.BlobProto(double_data=np.linspace(0, 1, 12).tolist())
    double.shape.dim.extend([1, 1, 3, 4])
    return {"legacy": legacy, "shape": shaped, "double": double}


DATUMS = _datum_seeds()
BLOBS = _blob_seeds()


def mutate_datum(datum, rng):
    d = pb.Datum()
    d.CopyFrom(datum)
    op = rng.choice(["size", "size", "encoded", "data", "float", "move", "label"])
    if op == "size":
        f = rng.choice(["channels", "height", "width"])
        setattr(d, f, rng.choice(HUGE))
        desc = f"{f} -> {getattr(d, f)}"
    elif op == "encoded":
        d.encoded = not d.encoded
        desc = f"encoded -> {d.encoded}"
    elif op == "data":
        n = len(d.data)
        cut = rng.choice([0, 1, n // 2, max(n - 1, 0), n + 1, 2 * n])
        d.data = (bytes(d.data) * 3)[:cut] if n else bytes(cut)
        desc = f"data length -> {cut}"
    elif op == "float":
        vals = list(d.float_data) or [1.0]
        d.ClearField("float_data")
        d.float_data.extend((vals * 3)[:rng.choice([0, 1, len(vals) - 1, len(vals) + 1])])
        desc = f"float_data length -> {len(d.float_data)}"
    elif op == "move":
        if d.data:
            d.float_data.extend(float(b) for b in d.data)
            d.ClearField("data")
        else:
            d.data = bytes(len(d.float_data))
        desc = "payload moved"
    else:
        d.label = rng.choice([-(2**31), 2**31 - 1])
        desc = "label"
    return d.SerializeToString(), desc


def mutate(data, rng, message_op):
    return fuzzlib.mutate_binary(data, rng, message_op, bytes_below=0.3, wire_below=0.6)


class _Layer:
    name, type = "fuzz", "Data"


def decode_datum(raw):
    """What the Data layer does with a record: parse, decode (native / colour / gray), transform."""
    tp = pb.TransformationParameter(crop_size=3, mirror=True, scale=0.5)
    tp.mean_value.append(10)
    transform = Transform(tp, pb.TRAIN, layer_error(_Layer()))
    for color in (None, True, False):
        arr = dt.datum_to_array(dt.parse_datum(raw, "fuzz, record 'k'"), color, "fuzz, record 'k'")
        transform(arr.transpose(1, 2, 0).astype(np.float32), np.random.default_rng(0), source="fuzz")


@pytest.mark.parametrize("name", sorted(DATUMS))
def test_mutated_datum_decodes_or_raises_netdef_error(name):
    seed = DATUMS[name].SerializeToString()
    decode_datum(seed)
    out = fuzzlib.Outcome(f"datum {name}")

    def message_op(data, rng):
        return mutate_datum(pb.Datum.FromString(data), rng)

    for i in range(fuzzlib.cases(150)):
        rng = fuzzlib.rng_for("datum", name, i)
        data, descs = mutate(seed, rng, message_op)
        out.run(f"datum {name} case {i}: {'; '.join(descs)}", decode_datum, data)
    out.finish()


def mutate_blob(data, rng):
    b = pb.BlobProto.FromString(data)
    op = rng.choice(["dims", "legacy", "data", "double"])
    if op == "dims":
        dims = list(b.shape.dim) or [1]
        dims[rng.randrange(len(dims))] = rng.choice(HUGE)
        b.shape.ClearField("dim")
        b.shape.dim.extend(dims)
        desc = f"shape -> {dims}"
    elif op == "legacy":
        f = rng.choice(["num", "channels", "height", "width"])
        setattr(b, f, rng.choice(HUGE))
        desc = f"{f} -> {getattr(b, f)}"
    elif op == "data":
        vals = list(b.data) or list(b.double_data)
        b.ClearField("data")
        b.data.extend((vals * 2)[:rng.choice([0, 1, len(vals) - 1, len(vals) + 1])])
        desc = f"data length -> {len(b.data)}"
    else:
        b.double_data.extend([1.0] * rng.choice([1, 5]))
        desc = "double_data added"
    return b.SerializeToString(), desc


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_mutated_binaryproto_reads_or_raises_netdef_error(name, tmp_path):
    seed = BLOBS[name].SerializeToString()
    path = tmp_path / "mean.binaryproto"

    def load():
        dt.read_binaryproto(path)
        read_mean_file(str(path))
        nio.blobproto_to_array(pb.BlobProto.FromString(path.read_bytes()))

    out = fuzzlib.Outcome(f"binaryproto {name}")
    for i in range(fuzzlib.cases(60)):
        rng = fuzzlib.rng_for("binaryproto", name, i)
        data, descs = mutate(seed, rng, mutate_blob)
        path.write_bytes(data)
        out.run(f"binaryproto {name} case {i}: {'; '.join(descs)}", load)
    out.finish()


def test_mutated_lmdb_records_through_the_data_layer(tmp_path):
    """A database whose second record is damaged, read by a Data layer (TRAIN, crop, mirror,
    mean): each forward delivers a batch or raises a NetdefError naming the record's key."""
    pytest.importorskip("lmdb")
    from netdef.data.lmdb_data import write_datums

    names = ["raw", "png", "raw"]
    out = fuzzlib.Outcome("lmdb records")
    for i in range(fuzzlib.cases(30)):
        rng = fuzzlib.rng_for("lmdb", "records", i)
        victim = rng.choice(sorted(DATUMS))
        bad, descs = mutate(DATUMS[victim].SerializeToString(), rng,
                            lambda d, r: mutate_datum(pb.Datum.FromString(d), r))
        db = tmp_path / f"db{i}"
        recs = [("a", DATUMS[names[0]]), ("b-mutated", bad), ("c", DATUMS[names[2]])]
        write_datums(db, recs)

        def run(db=db):
            net = netdef.Net(f'''layer {{ name: "d" type: "Data" top: "data" top: "label"
              transform_param {{ crop_size: 3 mirror: true mean_value: 5 }}
              data_param {{ source: "{db}" batch_size: 1 prefetch: 0 }} }}''', netdef.TRAIN)
            try:
                for _ in range(3):
                    net.forward()
            except netdef.NetdefError as e:
                assert "b-mutated" in str(e), str(e)
                raise
            finally:
                net.layer_dict["d"].close()

        out.run(f"lmdb record {victim} case {i}: {'; '.join(descs)}", run)
    out.finish()


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"\x00" * 8192])
def test_hostile_lmdb_files(tmp_path, content):
    pytest.importorskip("lmdb")
    from netdef.data.lmdb_data import open_db

    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(content)
    with pytest.raises(netdef.NetdefError, match="db"):
        open_db(tmp_path / "db")
