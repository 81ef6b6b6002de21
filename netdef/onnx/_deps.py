"""The `onnx` package, imported only when an export or import runs: `import netdef` and
`import netdef.onnx` work without it."""
from ..errors import NetdefError

#: the lowest and the default opset the exporter writes (11: Pad, Slice, Clip and Resize take
#: their sizes as inputs; 17 is read by every current runtime)
MIN_OPSET = 11
DEFAULT_OPSET = 17


def require_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper  # noqa: F401
    except ImportError:
        raise NetdefError("ONNX export and import need the onnx package: "
                          "pip install 'netdef[onnx]'") from None
    return onnx


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise NetdefError("checking an ONNX model needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def registrar(table):
    """The decorator filling a table of converters: @register("A", "B") def fn(...)."""
    def register(*names):
        def add(fn):
            for name in names:
                table[name] = fn
            return fn
        return add
    return register
