"""netdef's error types: every user-facing failure raises a NetdefError.

Each error says *where* (file:line:col, layer, blob) and *what* (expected vs found), so the CLI
can print it in one or two lines without a traceback.
"""


class NetdefError(Exception):
    """Base class of every error netdef raises for bad input or a failed operation."""

    def __init__(self, message, *, file=None, line=None, column=None, layer=None, blob=None):
        self.file, self.line, self.column = file, line, column
        self.layer, self.blob = layer, blob
        self.detail = message
        super().__init__(self._format())

    def _format(self):
        where = []
        if self.file:
            loc = str(self.file)
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            where.append(loc)
        if self.layer:
            where.append(f"layer '{self.layer}'")
        if self.blob:
            where.append(f"blob '{self.blob}'")
        return (", ".join(where) + ": " if where else "") + self.detail


class ParseError(NetdefError):
    """A prototxt, caffemodel or solverstate could not be read."""


class LayerSetupError(NetdefError):
    """A layer's parameters, bottoms or tops are invalid (wrong count, unknown field, bad value)."""


class ShapeError(NetdefError):
    """Blob shapes do not fit a layer's requirements."""


class BackendError(NetdefError):
    """The requested device or compiled kernels are not available."""


class TrainingError(NetdefError):
    """Training cannot go on (non-finite loss, failed snapshot)."""


def find_layer_line(path, layer_name):
    """1-based line of `name: "<layer_name>"` in a prototxt file, or None (for error messages)."""
    import re

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"""\bname\s*:\s*["']%s["']""" % re.escape(layer_name), text)
    return text.count("\n", 0, m.start()) + 1 if m else None
