"""A small seeded mutator for netdef's input formats, and the harness the fuzz tests share.

Every case is reproducible from (seed file, case index): case i of a test uses
random.Random(f"{test}:{seed_name}:{i}"), so a failure message names everything needed to
replay it. Case counts: NETDEF_FUZZ_CASES=N runs N cases per seed file (the defaults keep the
whole fuzz directory under a minute in CI); NETDEF_FUZZ_SEED=s changes the base seed.

Text mutations work on the token stream of a prototxt (strings, numbers, identifiers, braces,
colons); byte mutations work either blindly (truncation, bit flips) or on the parsed wire
format (a field's varint, length prefix or wire type), or on the decoded message (blob shapes
and payloads), so that each kind of damage reaches the code that must notice it.
"""
import faulthandler
import os
import random
import re
import sys
import time
import traceback

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wire  # noqa: E402  (tests/wire.py)

#: Memory budget per blob while fuzzing: a declared shape beyond it must be refused with a
#: NetdefError before anything is allocated (keeps fuzzing fast and the machine alive).
FUZZ_BLOB_BYTES = 32 << 20
#: A case running longer than this is reported as a hang (the process is stopped with a
#: traceback of every thread, see faulthandler.dump_traceback_later).
HANG_SECONDS = 60


@pytest.fixture(autouse=True)
def fuzz_budget(tmp_path_factory, monkeypatch):
    """Every fuzz module imports this (autouse there): FUZZ_BLOB_BYTES per blob, netdef's
    generator seeded, and the data directory in pytest's temp dir (a mutated net may name the
    built-in synthetic set: never generate it into the user's cache)."""
    import netdef
    from netdef.blob import set_max_blob_bytes

    monkeypatch.setenv("NETDEF_DATA_DIR", str(tmp_path_factory.getbasetemp() / "netdef-data"))
    set_max_blob_bytes(FUZZ_BLOB_BYTES)
    netdef.set_random_seed(0)
    yield
    set_max_blob_bytes(None)

STATS = {}  # test name -> [tried, loaded, refused, crashes]


def cases(default):
    return int(os.environ.get("NETDEF_FUZZ_CASES", default))


def rng_for(test, seed_name, i):
    return random.Random(f"{os.environ.get('NETDEF_FUZZ_SEED', '0')}:{test}:{seed_name}:{i}")


# ---------------------------------------------------------------------------------------------
# Prototxt text

_TOKEN = re.compile(r'''(?P<ws>\s+)|(?P<comment>\#[^\n]*)|(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|'''
                    r'''(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)|'''
                    r'''(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>.)''', re.S)

HUGE_NUMBERS = ["0", "-1", "-7", "1", "2", "3", "1000000", "2147483647", "2147483648", "4294967296",
                "-2147483649", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                "1e30", "-1e30", "1e308", "1e400", "nan", "inf", "-inf", "0.5", "-0.0", "1e-45",
                "99999999999999999999999999999999", "0x7fffffff", "077"]

LAYER_TYPES = ["Input", "Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "Crop",
               "Eltwise", "Concat", "Softmax", "SoftmaxWithLoss", "Accuracy", "Dropout", "Split",
               "Flatten", "Reshape", "Silence", "LRN", "BatchNorm", "Scale", "Bias", "PReLU",
               "Sigmoid", "TanH", "AbsVal", "Power", "Exp", "Log", "BNLL", "ELU", "ArgMax",
               "Python", "Data", "ImageData", "DummyData", "NoSuchLayer", "", "convolution"]

ENUMS = ["MAX", "AVE", "STOCHASTIC", "SUM", "PROD", "TRAIN", "TEST", "CAFFE", "CUDNN", "DEFAULT",
         "FULL", "VALID", "BATCH_SIZE", "NONE", "ACROSS_CHANNELS", "WITHIN_CHANNEL", "FAN_IN",
         "AVERAGE", "STRICT", "PERMISSIVE", "SGD", "ADAM", "BOGUS", "max", "Max", "true", "false",
         "True", "t", "f", "-1", "99"]


def tokenize(text):
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]


def join(tokens):
    return "".join(t for _, t in tokens)


def _significant(tokens, kinds=None):
    return [i for i, (k, t) in enumerate(tokens)
            if k not in ("ws", "comment") and (kinds is None or k in kinds)]


def _field_before(tokens, i):
    """The identifier of `name: value` for a value token at i (None if not such a value)."""
    j = i - 1
    while j >= 0 and tokens[j][0] == "ws":
        j -= 1
    if j >= 0 and tokens[j][1] == ":":
        j -= 1
        while j >= 0 and tokens[j][0] == "ws":
            j -= 1
        if j >= 0 and tokens[j][0] == "ident":
            return tokens[j][1]
    return None


def _block_span(tokens, open_index):
    """(start, end) token indices of the block whose '{' is at open_index, including the name
    before it; None if unbalanced."""
    depth = 0
    for j in range(open_index, len(tokens)):
        if tokens[j][1] == "{":
            depth += 1
        elif tokens[j][1] == "}":
            depth -= 1
            if depth == 0:
                start = open_index - 1
                while start > 0 and tokens[start][0] == "ws":
                    start -= 1
                return start, j + 1
    return None


def mutate_text(text, rng, n=None):
    """Apply 1-3 random mutations; returns (new text, list of descriptions)."""
    descs = []
    for _ in range(n or rng.choice([1, 1, 1, 2, 2, 3])):
        op = rng.choice(TEXT_OPS)
        text, d = op(text, rng)
        descs.append(d)
    return text, descs


def _op_delete_line(text, rng):
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    del lines[i]
    return "\n".join(lines), f"delete line {i + 1}"


def _op_duplicate_line(text, rng):
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines), f"duplicate line {i + 1}"


def _op_swap_lines(text, rng):
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines), f"swap lines {i + 1} and {j + 1}"


def _op_brace(text, rng):
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if t in "{}"]
    if not idx:
        return text + "}", "append }"
    i = rng.choice(idx)
    what = rng.choice(["delete", "duplicate", "flip"])
    if what == "delete":
        del toks[i]
    elif what == "duplicate":
        toks.insert(i, toks[i])
    else:
        toks[i] = ("punct", "}" if toks[i][1] == "{" else "{")
    return join(toks), f"{what} brace at token {i}"


def _op_number(text, rng):
    toks = tokenize(text)
    idx = _significant(toks, ("num",))
    if not idx:
        return text, "no number"
    i = rng.choice(idx)
    old = toks[i][1]
    r = rng.random()
    if r < 0.6:
        new = rng.choice(HUGE_NUMBERS)
    elif r < 0.8:
        new = str(rng.randint(-3, 40))
    else:
        try:
            new = str(int(float(old) * rng.choice([2, 10, 1000, -1])))
        except (ValueError, OverflowError):
            new = "1"
    toks[i] = ("num", new)
    return join(toks), f"number {_field_before(toks, i)}: {old} -> {new}"


def _op_string(text, rng):
    toks = tokenize(text)
    idx = _significant(toks, ("str",))
    if not idx:
        return text, "no string"
    i = rng.choice(idx)
    field = _field_before(toks, i)
    old = toks[i][1]
    if field == "type":
        new = '"%s"' % rng.choice(LAYER_TYPES)
    elif field == "param_str":
        new = '"%s"' % rng.choice(["{'split': 'train'", "[1, 2]", "1" + "+1" * 100000, "-" * 100000 + "1",
                                   "not" + " not" * 100000 + " 1", "[" * 100000, "__import__('os').getcwd()",
                                   "{'voc_dir': 1, 'split': None, 'mean': 'x'}", "{'mean': (1, 2)}" * 5000])
    elif field in ("bottom", "top"):
        names = [t for k, t in toks if k == "str"]
        new = rng.choice(names + ['""', '"nowhere"'])
    else:
        new = rng.choice(['""', '"x"', '"%s"' % ("a" * 300), '"\\xff\\x00"', '"\\777"', '"é"', "'single'",
                          '"unterminated'])
    toks[i] = ("str", new)
    return join(toks), f"string {field}: {old[:30]} -> {new[:30]}"


def _op_enum(text, rng):
    toks = tokenize(text)
    idx = [i for i in _significant(toks, ("ident",)) if _field_before(toks, i) is not None]
    if not idx:
        return text, "no enum"
    i = rng.choice(idx)
    old = toks[i][1]
    toks[i] = ("ident", rng.choice(ENUMS))
    return join(toks), f"enum {_field_before(toks, i)}: {old} -> {toks[i][1]}"


def _op_field_name(text, rng):
    toks = tokenize(text)
    idx = [i for i in _significant(toks, ("ident",)) if _field_before(toks, i) is None]
    if not idx:
        return text, "no field"
    i = rng.choice(idx)
    old = toks[i][1]
    names = sorted({t for k, t in toks if k == "ident"})
    toks[i] = ("ident", rng.choice(names + ["no_such_field", "layers", "blobs", "input", "input_dim"]))
    return join(toks), f"field {old} -> {toks[i][1]}"


def _op_unknown_field(text, rng):
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if t == "{"] or [0]
    i = rng.choice(idx) + 1
    ins = rng.choice([" bogus_field: 1 ", " zzz { a: 1 } ", " [ext.field]: 3 ", " blobs { data: 1 } ",
                      " propagate_down: true ", " loss_weight: 1 ", " param { lr_mult: 0 } ",
                      " include { phase: TRAIN } ", " exclude { stage: \"x\" } "])
    toks.insert(i, ("ident", ins))
    return join(toks), f"insert {ins.strip()!r} at token {i}"


def _op_duplicate_block(text, rng):
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if t == "{"]
    if not idx:
        return text, "no block"
    span = _block_span(toks, rng.choice(idx))
    if span is None:
        return text, "unbalanced block"
    s, e = span
    block = toks[s:e]
    target = rng.choice([s, e, rng.randrange(len(toks) + 1)])
    what = rng.choice(["duplicate", "move", "delete"])
    if what == "delete":
        del toks[s:e]
    elif what == "duplicate":
        toks[target:target] = [("ws", " ")] + block + [("ws", " ")]
    else:
        rest = toks[:s] + toks[e:]
        t = min(target, len(rest))
        toks = rest[:t] + [("ws", " ")] + block + [("ws", " ")] + rest[t:]
    return join(toks), f"{what} block {join(block)[:30]!r}"


def _op_truncate(text, rng):
    i = rng.randrange(len(text) + 1)
    return text[:i], f"truncate at char {i}"


def _op_garbage(text, rng):
    i = rng.randrange(len(text) + 1)
    junk = rng.choice(["\x00", "\xff", "\ud800", "é", ":", ";", ",", "<", ">", "[", "]", "\"", "'", "#",
                       "\\", "{{", "}}", "\t", "\r", "-", ".", "e", "0x", "\u2028"])
    return text[:i] + junk + text[i:], f"insert {junk!r} at char {i}"


def _op_deep_nesting(text, rng):
    n = rng.choice([10, 100, 1000, 10000])
    field = rng.choice(["layer", "include", "input_param", "a", "shape"])
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if t == "{"] or [0]
    i = rng.choice(idx) + 1
    toks.insert(i, ("punct", (" %s {" % field) * n + " }" * n))
    return join(toks), f"nest {field} x{n} at token {i}"


TEXT_OPS = [_op_delete_line, _op_duplicate_line, _op_swap_lines, _op_brace, _op_brace, _op_number,
            _op_number, _op_number, _op_string, _op_string, _op_enum, _op_field_name, _op_unknown_field,
            _op_duplicate_block, _op_truncate, _op_garbage, _op_deep_nesting]


DATA_LAYER_TYPES = ("Python", "SegData", "SegmentationData", "ImageData", "Data", "HDF5Data")


def shrink_fcn(text):
    """The same net at a size that builds in milliseconds: every num_output of 64 or more
    divided by 32, data layers (Python, SegData, ...) replaced by an Input layer of 1x3x64x64
    (+ label), and input dims above 64 reduced to 64. The graph, kernels, strides, pads and
    crops are unchanged."""
    text = re.sub(r"num_output:\s*(\d+)", lambda m: "num_output: %d" % (int(m.group(1)) // 32
                                                                          if int(m.group(1)) >= 64 else int(m.group(1))), text)
    text = re.sub(r"dim:\s*(\d+)", lambda m: "dim: %d" % min(int(m.group(1)), 64), text)
    data_type = re.compile(r'type:\s*"(%s)"' % "|".join(DATA_LAYER_TYPES))
    toks = tokenize(text)
    out, i = [], 0
    while i < len(toks):
        if toks[i] == ("ident", "layer"):
            j = next(k for k in range(i + 1, len(toks)) if toks[k][0] not in ("ws", "comment"))
            span = _block_span(toks, j) if toks[j][1] == "{" else None
            block = join(toks[i:span[1]]) if span else ""
            if span and data_type.search(block):
                tops = re.findall(r'top:\s*"([^"]+)"', block)
                shapes = " ".join("shape { dim: 1 dim: %d dim: 64 dim: 64 }" % (3 if k == 0 else 1)
                                  for k in range(len(tops)))
                out.append(("ident", 'layer { name: "data" type: "Input" %s input_param { %s } }' % (
                    " ".join('top: "%s"' % t for t in tops), shapes)))
                i = span[1]
                continue
        out.append(toks[i])
        i += 1
    return join(out)


# ---------------------------------------------------------------------------------------------
# Protobuf wire bytes


def read_varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def parse_fields(data, depth=0):
    """[(field, wire_type, start, end, value)] for a buffer that parses as wire format, or None.
    value: int (varint), bytes (fixed), or a nested list / bytes (length-delimited)."""
    out, pos = [], 0
    try:
        while pos < len(data):
            start = pos
            key, pos = read_varint(data, pos)
            field, wt = key >> 3, key & 7
            if field == 0:
                return None
            if wt == 0:
                value, pos = read_varint(data, pos)
            elif wt == 1:
                value, pos = data[pos:pos + 8], pos + 8
            elif wt == 5:
                value, pos = data[pos:pos + 4], pos + 4
            elif wt == 2:
                n, pos = read_varint(data, pos)
                value = data[pos:pos + n]
                if len(value) != n:
                    return None
                pos += n
                if depth < 6 and value:
                    sub = parse_fields(value, depth + 1)
                    if sub is not None:
                        value = sub
            else:
                return None
            if pos > len(data):
                return None
            out.append((field, wt, start, pos, value))
    except ValueError:
        return None
    return out


RAW = -1  # a node whose bytes (key included) are emitted as they are


def encode_fields(fields):
    out = bytearray()
    for field, wt, _, _, value in fields:
        if wt == RAW:
            out += value
            continue
        out += wire.key(field, wt)
        if wt == 0:
            out += wire.varint(value)
        elif wt in (1, 5):
            out += value
        else:
            payload = encode_fields(value) if isinstance(value, list) else value
            out += wire.varint(len(payload)) + payload
    return bytes(out)


def _all_nodes(fields, path=()):
    for k, f in enumerate(fields):
        yield fields, k, path + (f[0],)
        if isinstance(f[4], list):
            yield from _all_nodes(f[4], path + (f[0],))


HUGE_VARINTS = [0, 1, 2, 0x7F, 0x80, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**62, 2**63, 2**64 - 1,
                (1 << 64) - 2**31]


def mutate_wire(data, rng):
    """One mutation of a field found by parsing the wire format (falls back to a blind one)."""
    fields = parse_fields(data)
    if not fields:
        return mutate_bytes(data, rng)
    nodes = list(_all_nodes(fields))
    parent, k, path = rng.choice(nodes)
    field, wt, start, end, value = parent[k]
    op = rng.choice(["value", "wiretype", "delete", "duplicate", "length", "length", "swapfield"])
    name = ".".join(map(str, path))
    if op == "value" and wt == 0:
        parent[k] = (field, wt, start, end, rng.choice(HUGE_VARINTS))
        return encode_fields(fields), f"varint {name} -> {parent[k][4]}"
    if op == "value" and wt in (1, 5):
        parent[k] = (field, wt, start, end, bytes(rng.randrange(256) for _ in value))
        return encode_fields(fields), f"fixed {name} randomized"
    if op == "wiretype":
        new_wt = rng.choice([w for w in (0, 1, 2, 3, 4, 5, 6, 7) if w != wt])
        return _rewrite_key(fields, parent, k, new_wt), f"wire type of {name}: {wt} -> {new_wt}"
    if op == "delete":
        del parent[k]
        return encode_fields(fields), f"delete field {name}"
    if op == "duplicate":
        parent.insert(k, parent[k])
        return encode_fields(fields), f"duplicate field {name}"
    if op == "swapfield":
        parent[k] = (rng.choice([1, 2, 3, 5, 6, 7, 8, 9, 100, 536870911]), wt, start, end, value)
        return encode_fields(fields), f"field number of {name} -> {parent[k][0]}"
    # length: a length-delimited field whose declared length lies (huge, or off by a little)
    if wt != 2:
        return mutate_bytes(data, rng)
    payload = encode_fields(value) if isinstance(value, list) else value
    lie = rng.choice([len(payload) + 1, len(payload) - 1, len(payload) + 1000, 2**31 - 1, 2**31, 2**32,
                      2**63, 2**64 - 1])
    raw = wire.key(field, 2) + wire.varint(max(lie, 0)) + payload
    parent[k] = (field, RAW, start, end, raw)
    return encode_fields(fields), f"length of {name}: {len(payload)} -> {lie}"


def _rewrite_key(fields, parent, k, new_wt):
    """parent[k] re-keyed with another wire type (its value bytes unchanged, so the decoder
    reads them under the wrong type); returns the whole encoding."""
    field, wt, start, end, value = parent[k]
    single = encode_fields([parent[k]])
    parent[k] = (field, RAW, start, end, wire.key(field, new_wt) + single[len(wire.key(field, wt)):])
    return encode_fields(fields)


def mutate_bytes(data, rng):
    """Blind damage: truncation, bit flips, overwritten / inserted / deleted bytes."""
    data = bytearray(data)
    op = rng.choice(["truncate", "flip", "flip", "overwrite", "insert", "delete", "splice"])
    if op == "truncate" or not data:
        i = rng.randrange(len(data) + 1)
        return bytes(data[:i]), f"truncate to {i} bytes"
    if op == "flip":
        n = rng.choice([1, 1, 2, 8])
        where = [rng.randrange(len(data)) for _ in range(n)]
        for i in where:
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data), f"flip bits at {where}"
    i = rng.randrange(len(data))
    if op == "overwrite":
        b = rng.choice([0x00, 0xFF, 0x80, 0x7F, 0x08, 0x0A, 0x12, 0x1A, 0x0F, 0x0C])
        data[i] = b
        return bytes(data), f"byte {i} = {b:#x}"
    if op == "insert":
        junk = rng.choice([b"\xff" * 10, b"\x80" * 11, b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x0c", b"\x00"])
        data[i:i] = junk
        return bytes(data), f"insert {junk!r} at {i}"
    if op == "delete":
        n = rng.randrange(1, 16)
        del data[i:i + n]
        return bytes(data), f"delete {n} bytes at {i}"
    j = rng.randrange(len(data))
    n = rng.randrange(1, 64)
    data[i:i] = data[j:j + n]
    return bytes(data), f"splice {n} bytes from {j} to {i}"


def mutate_binary(data, rng, message_op, bytes_below=0.3, wire_below=0.6):
    """One or two rounds of damage to a serialized message: a uniform draw below `bytes_below`
    damages blind bytes, below `wire_below` wire-level fields, else `message_op(data, rng)` -> (data, description), a change that knows
    the message; when the bytes no longer parse for it, blind bytes instead. Returns
    (data, [description per round])."""
    descs = []
    for _ in range(rng.choice([1, 1, 2])):
        r = rng.random()
        if r < bytes_below:
            data, d = mutate_bytes(data, rng)
        elif r < wire_below:
            data, d = mutate_wire(data, rng)
        else:
            try:
                data, d = message_op(data, rng)
            except Exception:  # the bytes no longer parse: damage them blindly instead
                data, d = mutate_bytes(data, rng)
        descs.append(d)
    return data, descs


def deep_groups(depth, field=1000):
    """An unknown group nested `depth` deep (start-group ... end-group): recursion in a decoder."""
    return wire.key(field, 3) * depth + wire.key(field, 4) * depth


def deep_messages(depth):
    """`depth` nested length-delimited unknown fields (each parses as a sub-message)."""
    payload = b""
    for _ in range(depth):
        payload = wire.ld(7, payload)
    return payload


# ---------------------------------------------------------------------------------------------
# Running cases


class Outcome:
    def __init__(self, test):
        self.test = test
        self.tried = self.loaded = self.refused = 0
        self.crashes = []
        self.slowest = (0.0, None)

    def run(self, label, fn, *args):
        """Run one case; NetdefError counts as a clean refusal, anything else as a crash."""
        from netdef import NetdefError

        self.tried += 1
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        t0 = time.perf_counter()
        try:
            fn(*args)
            self.loaded += 1
        except NetdefError as e:
            self.refused += 1
            msg = str(e)
            if len(msg) > 2000 or msg.count("\n") > 3:
                self.crashes.append((label, f"NetdefError message too long ({len(msg)} chars, "
                                            f"{msg.count(chr(10)) + 1} lines): {msg[:200]!r}"))
        except BaseException as e:  # noqa: B902 - a fuzz case must not escape with anything else
            if isinstance(e, KeyboardInterrupt):
                raise
            tb = traceback.extract_tb(e.__traceback__)
            where = "; ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in tb[-3:])
            self.crashes.append((label, f"{type(e).__name__}: {str(e)[:300]} [{where}]"))
        finally:
            faulthandler.cancel_dump_traceback_later()
        dt = time.perf_counter() - t0
        if dt > self.slowest[0]:
            self.slowest = (dt, label)

    def finish(self):
        STATS[self.test] = (self.tried, self.loaded, self.refused, len(self.crashes), self.slowest)
        if self.crashes:
            lines = [f"{len(self.crashes)} of {self.tried} fuzz cases crashed; first ones:"]
            lines += [f"  {label}\n      {err}" for label, err in self.crashes[:8]]
            raise AssertionError("\n".join(lines))
