"""Snapshots and exact resume: the Snapshots mixin of Solver, and reading .solverstate files.

Snapshots: <prefix>_iter_<N>.caffemodel (the train net's params) and <prefix>_iter_<N>.solverstate
(a SolverState: iter, learned_net, history, current_step), each written to a temporary name and
renamed; with snapshot_format: HDF5, <prefix>_iter_<N>.caffemodel.h5 and .solverstate.h5 in
Caffe's HDF5 layout (Net.save_hdf5; datasets iter, learned_net, current_step, group history),
and restore() reads a path ending in .h5 as that (needs h5py: pip install 'netdef[hdf5]'). Where, as Caffe puts them: a relative snapshot_prefix is relative to the current
directory; a prefix that names a directory (ends with '/' or is one) gets the solver file's
name without extension appended; no prefix is the solver file's path without its extension.
When the prefix's directory is not in the current directory but is next to the solver file
(netdef's models/* run from elsewhere), snapshots go there, and one line says so; when it is
in neither, the solver refuses to start, naming the directory.
For an exact resume the solverstate also carries, in its netdef_state field (JSON; Caffe ignores
it), the random generators of the backend (host: fillers and data order; device: Dropout masks)
and the state of every layer whose get_state() is not None (data readers; see Layer: the state
must be JSON-able and describe the next batch the layer will deliver, not what a prefetch thread
has read ahead). On the CPU a run resumed at iteration k then ends bit-identical to one never
stopped. A GPU generator's state cannot be read back, so on the GPU each snapshot reseeds it from
the host generator (same results with and without resume, for a given snapshot interval).
"""
import json
import logging
import os

import numpy as np

from ..core import netdef_pb2 as pb
from ..core import proto
from ..errors import BackendError, NetdefError, ParseError, TrainingError

log = logging.getLogger("netdef")

STATE_FORMAT = 1


def read_solverstate(path):
    """(SolverState, netdef extras dict or None) from a .solverstate."""
    state = proto.read_binary(path, pb.SolverState, "solverstate (SolverState)")
    extra = None
    if state.HasField("netdef_state"):
        extra = _parse_netdef_state(state.netdef_state, path)
    return state, extra


def _parse_netdef_state(raw, path):
    try:
        extra = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ParseError(f"corrupt netdef_state in the solverstate: {str(e)[:200]}", file=os.fspath(path)) from None
    if not isinstance(extra, dict) or extra.get("format") != STATE_FORMAT:
        raise ParseError(f"netdef_state of an unknown format: {str(extra)[:80]}", file=os.fspath(path))
    return extra


def read_solverstate_hdf5(path):
    """(SolverState, netdef extras dict or None) from a .solverstate.h5 (Caffe's HDF5 layout,
    see Snapshots._write_state_hdf5)."""
    from ..core.net import _h5py

    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ParseError(f"cannot read the solverstate as HDF5: {e}", file=path) from None
    with f:
        try:
            state = pb.SolverState(iter=int(f["iter"][()]), current_step=int(f["current_step"][()]))
            if "learned_net" in f:
                name = f["learned_net"][()]
                state.learned_net = name.decode("utf-8") if isinstance(name, bytes) else str(name)
            history = f["history"]
            for k in range(len(history)):
                proto.blob_to_proto(np.asarray(history[str(k)]), state.history.add())
            raw = f["netdef_state"][()] if "netdef_state" in f else None
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ParseError(f"not a Caffe HDF5 solverstate (iter, current_step, history): "
                             f"{type(e).__name__}: {e}", file=path) from None
    return state, (None if raw is None else _parse_netdef_state(raw, path))


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


class Snapshots:
    """Solver's snapshot and restore (a mixin: it uses the Solver's param, net, test_nets,
    history, iter, current_step, backend, dtype, loss_scaler and _path)."""

    last_snapshot = None
    loss_scaler = None
    _last_snapshot_iter = None
    #: (snapshot_prefix as written, where it resolved to): resolving looks at the file system
    #: and may log, so it is done once per value
    _prefix_cache = None

    @property
    def snapshot_prefix(self):
        """Where snapshots go (see the module docstring), resolved once per snapshot_prefix."""
        raw = self.param.snapshot_prefix
        cached = self._prefix_cache
        if cached is None or cached[0] != raw:
            cached = (raw, self._resolve_prefix(raw))
            self._prefix_cache = cached
        return cached[1]

    def _resolve_prefix(self, raw):
        stem = os.path.splitext(os.path.basename(self.filename))[0] if self.filename else None
        if not raw:
            # Caffe: the solver file's path without its extension (so beside the solver file);
            # a solver built in code: the net's name in the current directory
            if self.filename:
                return os.path.splitext(self.filename)[0]
            return self.net.name or "netdef"

        def complete(prefix):
            if prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
                return os.path.join(prefix, stem or self.net.name or "netdef")
            return prefix

        prefix = complete(os.path.expanduser(raw))
        if os.path.isabs(prefix) or os.path.isdir(os.path.dirname(prefix) or ".") or not self.filename:
            return prefix
        beside = complete(os.path.normpath(os.path.join(self.dir, os.path.expanduser(raw))))
        if os.path.isdir(os.path.dirname(beside)):
            log.info("snapshot_prefix %s: directory %s is not in the current directory; "
                     "snapshotting to %s, next to the solver file", raw, os.path.dirname(prefix), beside)
            return beside
        return prefix

    def snapshot_filename(self, ext):
        return f"{self.snapshot_prefix}_iter_{self.iter}{ext}"

    def _check_snapshot_prefix(self):
        d = os.path.dirname(self.snapshot_prefix) or "."
        if not os.path.isdir(d):
            raise TrainingError(f"cannot write snapshots: directory '{d}' of snapshot_prefix "
                                f"'{self.snapshot_prefix}' does not exist")
        if not os.access(d, os.W_OK):
            raise TrainingError(f"cannot write snapshots: directory '{d}' is not writable")

    def snapshot(self):
        """Write <prefix>_iter_<N>.caffemodel and .solverstate (each atomically); with
        snapshot_format: HDF5, .caffemodel.h5 and .solverstate.h5 in Caffe's HDF5 layout.
        Non-finite weights are never written: they stop training and the last snapshot stays
        the last."""
        self._check_finite_params()
        h5 = self.param.snapshot_format == pb.SolverParameter.HDF5
        model = self.snapshot_filename(".caffemodel.h5" if h5 else ".caffemodel")
        state_file = self.snapshot_filename(".solverstate.h5" if h5 else ".solverstate")
        log.info("Snapshotting to %s file %s", "HDF5" if h5 else "binary proto", model)
        try:
            if h5:
                self.net.save_hdf5(model, write_diff=self.param.snapshot_diff)
            else:
                proto.write_binary(self.net.to_proto(write_diff=self.param.snapshot_diff), model)
            log.info("Snapshotting solver state to %s file %s", "HDF5" if h5 else "binary proto",
                     state_file)
            if h5:
                self._write_state_hdf5(state_file, model)
            else:
                proto.write_binary(self._solver_state(model), state_file)
        except NetdefError as e:
            raise TrainingError(f"snapshot failed ({e}); the previous snapshot "
                                f"{self.last_snapshot or '(none)'} is intact") from None
        self._last_snapshot_iter = self.iter
        self.last_snapshot = state_file
        return state_file

    def _write_state_hdf5(self, path, model):
        """Caffe's SnapshotSolverStateToHDF5: datasets iter, learned_net, current_step and a
        group history of datasets "0", "1", ...; netdef's extras in a string dataset
        netdef_state (Caffe ignores it)."""
        from ..core.net import _h5py

        h5py = _h5py()
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with h5py.File(tmp, "w") as f:
                f["iter"] = np.int32(self.iter)
                f["learned_net"] = model
                f["current_step"] = np.int32(self.current_step)
                g = f.create_group("history")
                for k, h in enumerate(self.history):
                    g.create_dataset(str(k), data=h.to_numpy())
                f["netdef_state"] = self._netdef_state().decode("utf-8")
            os.replace(tmp, path)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise NetdefError(f"cannot write {path}: {e}") from None

    def _check_finite_params(self):
        """An update can diverge while the loss it came from was finite (an infinite gradient);
        the loss check would only see it at the next forward, after a snapshot had saved it."""
        xp = self.backend.xp
        for name, layer in self.net.layer_dict.items():
            for k, blob in enumerate(layer.blobs):
                if not bool(xp.isfinite(blob.data).all()):
                    kept = (f"the last snapshot ({self.last_snapshot}) is intact" if self.last_snapshot
                            else "no snapshot was written")
                    raise TrainingError(
                        f"iteration {self.iter}: param {k} of layer '{name}' ({layer.type}) is "
                        f"non-finite after the update of iteration {self.iter - 1} (the loss was "
                        f"finite, a gradient was not); not snapshotting it: {kept}. Try a lower "
                        "base_lr or clip_gradients.")

    def _solver_state(self, model):
        state = pb.SolverState(iter=self.iter, learned_net=model, current_step=self.current_step)
        for h in self.history:
            proto.blob_to_proto(h.to_numpy(), state.history.add())
        state.netdef_state = self._netdef_state()
        return state

    def _netdef_state(self):
        extra = {"format": STATE_FORMAT, "rng": self.backend.rng_state(), "layers": self._layer_states()}
        if self.loss_scaler is not None:
            extra["loss_scale"] = self.loss_scaler.get_state()
        return json.dumps(extra, default=_json_default, sort_keys=True).encode("utf-8")

    def _nets(self):
        return [("train", self.net)] + [(f"test{i}", n) for i, n in enumerate(self.test_nets)]

    def _layer_states(self):
        out = {}
        for key, net in self._nets():
            states = {name: state for name, layer in net.layer_dict.items()
                      if (state := layer.get_state()) is not None}
            if states:
                out[key] = states
        return out

    def restore(self, path):
        """Continue from a .solverstate: iteration, weights, history, lr step, and (netdef
        snapshots) the random generators and data readers' positions."""
        path = os.fspath(path)
        state, extra = (read_solverstate_hdf5 if path.endswith(".h5") else read_solverstate)(path)
        if state.iter < 0 or state.current_step < 0:
            raise ParseError(f"negative iteration ({state.iter}) or lr step ({state.current_step}) in the "
                             "solverstate (corrupt file?)", file=path)
        self.iter = state.iter
        if state.learned_net:
            self.net.copy_from(self._find_learned_net(state.learned_net, path))
        self.current_step = state.current_step
        if len(state.history) != len(self.history):
            raise ParseError(f"the solverstate has {len(state.history)} history blobs, this "
                             f"{type(self).__name__} on this net needs {len(self.history)} "
                             "(another solver type or net?)", file=path)
        log.info("%s: restoring history", type(self).__name__)
        for k, (h, bp) in enumerate(zip(self.history, state.history)):
            values = proto.proto_to_array(bp, self.dtype, f"history blob {k}: ")
            if values.shape != h.shape:
                raise ParseError(f"history blob {k} has shape {values.shape}, the param has {h.shape}",
                                 file=path)
            h.data[...] = self.backend.asarray(values, dtype=self.dtype)
        if extra is None:
            log.info("%s has no netdef state (a Caffe snapshot?): random generators and data "
                     "readers start afresh", path)
            return
        try:
            self.backend.set_rng_state(extra.get("rng") or {})
            if self.loss_scaler is not None and extra.get("loss_scale"):
                self.loss_scaler.set_state(extra["loss_scale"])
                self.net.loss_scale = self.loss_scaler.scale
            layers = extra.get("layers") or {}
            for key, net in self._nets():
                saved = layers.get(key, {})
                for name, layer in net.layer_dict.items():
                    if name in saved:
                        layer.set_state(saved[name])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, BackendError) as e:
            # netdef_state is JSON of the expected shape unless the file was damaged or edited
            raise ParseError(f"corrupt netdef_state in the solverstate: {type(e).__name__}: {str(e)[:200]}",
                             file=path) from None
        self._last_snapshot_iter = self.iter
        self.last_snapshot = path

    def _find_learned_net(self, learned, state_path):
        """The caffemodel beside the solverstate (so snapshot directories can move), else the
        stored path as given."""
        beside = os.path.join(os.path.dirname(os.path.abspath(state_path)), os.path.basename(learned))
        if os.path.isfile(beside):
            return beside
        return learned
