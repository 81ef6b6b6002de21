"""A tiny protobuf wire-format encoder, written from the format's definition, so tests can
build Caffe files byte by byte without going through netdef's own schema."""
import struct


def varint(n):
    if n < 0:
        n += 1 << 64  # int32/int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field, wire_type):
    return varint((field << 3) | wire_type)


def v(field, n):
    return key(field, 0) + varint(n)


def ld(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + varint(len(payload)) + payload


def f32(field, x):
    return key(field, 5) + struct.pack("<f", x)


def packed_f32(field, xs):
    return ld(field, b"".join(struct.pack("<f", x) for x in xs))


def packed_f64(field, xs):
    return ld(field, b"".join(struct.pack("<d", x) for x in xs))


def packed_varint(field, xs):
    return ld(field, b"".join(varint(x) for x in xs))
