"""Caffe's key-value databases of Datum records: LMDB (the `lmdb` package, extra
netdef[lmdb]) and LevelDB (the `plyvel` package, extra netdef[leveldb]).

A database is a directory, as Caffe makes it: LMDB's data.mdb and lock.mdb, or LevelDB's
CURRENT, MANIFEST-* and *.ldb files. Records are read in key order, which is the order
convert-imageset and extract-features write them in (their keys start with a zero-padded index).

    write_datums(path, records, backend="lmdb")   make a database from (key, Datum) pairs,
                                                  atomically (a temporary directory renamed)
    open_db(path, backend=None)                   a DBReader: len(), read(start, count), items()

Every error names the database's path, and the key of a record that cannot be read.
"""
import os
import shutil
import threading

from ..core import tempfiles
from ..errors import NetdefError

BACKENDS = ("lmdb", "leveldb")


def require(backend):
    """The module of a backend, or an error naming the extra that installs it."""
    backend = backend.lower()
    if backend == "lmdb":
        try:
            import lmdb
        except ImportError:
            raise NetdefError("LMDB databases need the lmdb package: pip install 'netdef[lmdb]'") from None
        return lmdb
    if backend == "leveldb":
        try:
            import plyvel
        except ImportError:
            raise NetdefError("LevelDB databases need the plyvel package: pip install 'netdef[leveldb]'; "
                              "or convert the images to LMDB with `netdef convert-imageset --backend lmdb` "
                              "and set `backend: LMDB`") from None
        return plyvel
    raise NetdefError(f"unknown database backend '{backend}'; one of {', '.join(BACKENDS)}")


def detect_backend(path):
    """'lmdb' or 'leveldb' from the files in the directory, or None."""
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return "lmdb"
    if os.path.isfile(os.path.join(path, "CURRENT")):
        return "leveldb"
    return None


def key_text(key):
    try:
        return bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        return repr(bytes(key))


# ---- reading ------------------------------------------------------------------------------------


class DBReader:
    """Records by position in key order. read(start, count) returns [(key, value), ...] for
    positions start .. start+count-1 (< len). A read that follows the previous one goes on from
    its key; any other start walks from the first record once (a resumed run)."""

    def __init__(self, path, backend):
        self.path, self.backend = path, backend
        self._lock = threading.Lock()
        self._next = {}  # position -> key, for the position after each read
        self.count = self._count()
        if self.count == 0:
            raise NetdefError(f"the {backend.upper()} database has no records", file=path)

    def __len__(self):
        return self.count

    def read(self, start, count):
        with self._lock:
            start = int(start)
            key = None if start == 0 else self._next.get(start)
            if start and key is None:
                key = self._walk_to(start)
            out = self._scan(key, count + 1)
            if len(out) < count:
                raise NetdefError(f"{count} records from position {start} expected, found {len(out)} "
                                  "(was the database changed while it was read?)", file=self.path)
            if len(self._next) > 64:
                self._next.clear()
            if len(out) > count:
                self._next[start + count] = out[count][0]
            return out[:count]

    def items(self):
        """Every (key, value), in key order."""
        key = None
        while True:
            chunk = self._scan(key, 1025)
            if key is not None:
                chunk = chunk[1:]
            yield from chunk
            if len(chunk) < 1024:
                return
            key = chunk[-1][0]

    def _walk_to(self, pos):
        key, seen = None, 0
        while True:
            chunk = self._scan(key, 4097)
            if key is not None:
                chunk = chunk[1:]
            if seen + len(chunk) > pos:
                return chunk[pos - seen][0]
            if len(chunk) < 4096:
                raise NetdefError(f"position {pos} is past the last record ({self.count})", file=self.path)
            seen += len(chunk)
            key = chunk[-1][0]


class LMDBReader(DBReader):
    def __init__(self, path):
        lmdb = require("lmdb")
        try:
            # lock=False: a reader takes no lock (Caffe's readers neither); the database is not
            # written while a net reads it.
            self.env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=256,
                                 subdir=os.path.isdir(path))
        except lmdb.Error as e:
            raise NetdefError(f"cannot open the LMDB database ({type(e).__name__}: {e})", file=path) from None
        try:
            super().__init__(path, "lmdb")
        except BaseException:  # no records: not kept, so close it (lmdb allows one per path)
            self.env.close()
            raise

    def _count(self):
        return int(self.env.stat()["entries"])

    def close(self):
        self.env.close()

    def _scan(self, key, count):
        """Up to `count` (key, value) from `key` (inclusive; None: the first)."""
        lmdb = require("lmdb")
        out = []
        try:
            with self.env.begin(buffers=False) as txn:
                cur = txn.cursor()
                found = cur.first() if key is None else cur.set_key(key)
                if not found:
                    return out
                for k, v in cur:
                    out.append((k, v))
                    if len(out) == count:
                        break
        except lmdb.Error as e:
            where = "" if key is None else f" after record '{key_text(key)}'"
            raise NetdefError(f"cannot read the LMDB database{where} ({type(e).__name__}: {e})",
                              file=self.path) from None
        return out


class LevelDBReader(DBReader):
    def __init__(self, path):
        plyvel = require("leveldb")
        try:
            self.db = plyvel.DB(path, create_if_missing=False)
        except Exception as e:  # plyvel.Error, IOError and friends
            raise NetdefError(f"cannot open the LevelDB database ({type(e).__name__}: {e})", file=path) from None
        try:
            super().__init__(path, "leveldb")
        except BaseException:
            self.db.close()
            raise

    def close(self):
        self.db.close()

    def _count(self):
        n = 0
        for _ in self.db.iterator(include_value=False):
            n += 1
        return n

    def _scan(self, key, count):
        out = []
        try:
            for k, v in self.db.iterator(start=key):
                out.append((k, v))
                if len(out) == count:
                    break
        except Exception as e:
            raise NetdefError(f"cannot read the LevelDB database ({type(e).__name__}: {e})", file=self.path) from None
        return out


#: Open databases by (path, backend): (stamp, reader), shared by the layers that read the same
#: one (a train and a test net). Kept open for the process: lmdb allows one environment per
#: path and process, and a transaction or cursor still alive somewhere would keep a dropped one
#: registered; a database rewritten at the same path (a new stamp) closes the old reader first.
_open = {}
_open_lock = threading.Lock()


def open_db(path, backend=None):
    """A DBReader of the database directory `path`; backend 'lmdb' or 'leveldb', None to tell
    from the files. Errors for a missing path, a database of the other kind, or no records."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise NetdefError("the database does not exist (make one with `netdef convert-imageset`)", file=path)
    found = detect_backend(path) if os.path.isdir(path) else ("lmdb" if os.path.isfile(path) else None)
    if backend is None:
        backend = found
        if backend is None:
            raise NetdefError("not a database: the directory has neither LMDB's data.mdb nor LevelDB's "
                              "CURRENT", file=path)
    backend = backend.lower()
    if found is not None and found != backend:
        raise NetdefError(f"the database is {found.upper()} but backend {backend.upper()} was asked for "
                          f"(set backend: {found.upper()})", file=path)
    # A rewritten LMDB is a new data.mdb. A LevelDB directory changes whenever it is opened
    # (its LOG), and one process can open it only once: one reader.
    stamp = None
    if backend == "lmdb":
        try:
            st = os.stat(os.path.join(path, "data.mdb") if os.path.isdir(path) else path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            pass
    with _open_lock:
        old = _open.get((path, backend))
        if old is not None and old[0] == stamp:
            return old[1]
        if old is not None:
            old[1].close()
            del _open[(path, backend)]
        reader = LMDBReader(path) if backend == "lmdb" else LevelDBReader(path)
        _open[(path, backend)] = (stamp, reader)
    return reader


# ---- writing ------------------------------------------------------------------------------------


def _serialize(value):
    return value if isinstance(value, (bytes, bytearray)) else value.SerializeToString()


def _key_bytes(key):
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def _write_lmdb(tmp, records, commit_every):
    lmdb = require("lmdb")
    map_size = 1 << 26
    env = lmdb.open(tmp, map_size=map_size, subdir=True, meminit=False, map_async=False)
    written = 0
    try:
        batch = []

        def commit():
            nonlocal map_size
            while True:
                try:
                    with env.begin(write=True) as txn:
                        for k, v in batch:
                            txn.put(k, v)
                    break
                except lmdb.MapFullError:  # grow the map and write the batch again
                    map_size *= 2
                    env.set_mapsize(map_size)
            batch.clear()

        for key, value in records:
            batch.append((_key_bytes(key), _serialize(value)))
            written += 1
            if len(batch) >= commit_every:
                commit()
        if batch:
            commit()
        env.sync(True)
    finally:
        env.close()
    return written


def _write_leveldb(tmp, records, commit_every):
    plyvel = require("leveldb")
    db = plyvel.DB(tmp, create_if_missing=True, error_if_exists=False)
    written = 0
    try:
        wb = db.write_batch(sync=False)
        for key, value in records:
            wb.put(_key_bytes(key), _serialize(value))
            written += 1
            if written % commit_every == 0:
                wb.write()
                wb = db.write_batch(sync=False)
        wb.write()
    finally:
        db.close()
    return written


def write_datums(path, records, backend="lmdb", commit_every=1000, overwrite=False):
    """Write a database of (key, Datum or serialized bytes) pairs at `path` (a new directory)
    and return the number of records. It is built in a temporary directory next to `path` and
    renamed at the end, so an interrupted or failed write never leaves a database under `path`.
    An existing `path` is an error unless `overwrite`. Keys are str or bytes; LMDB and LevelDB
    keep them in byte order, which is the order readers see."""
    backend = backend.lower()
    require(backend)
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.exists(path) and not overwrite:
        raise NetdefError("the database already exists; remove it first", file=path)
    if not os.path.isdir(parent):
        raise NetdefError("cannot create the database: its parent directory does not exist", file=path)
    try:
        tmp = tempfiles.mkdtemp(parent, os.path.basename(path) + ".")
    except OSError as e:
        raise NetdefError(f"cannot create the database: {e.strerror}", file=path) from None
    try:
        writer = _write_lmdb if backend == "lmdb" else _write_leveldb
        try:
            n = writer(tmp, records, int(commit_every))
        except NetdefError:
            raise
        except Exception as e:
            if type(e).__module__.split(".")[0] in ("lmdb", "plyvel") or isinstance(e, OSError):
                raise NetdefError(f"cannot write the database ({type(e).__name__}: {e})", file=path) from None
            raise
        if overwrite and os.path.exists(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:  # also KeyboardInterrupt: the temporary directory goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n
