"""The data layers live in netdef/data/; importing them here registers their types (SegData,
ImageData, MemoryData, DummyData, HDF5Data, Python) with the layer registry."""
from ..data import seg_data  # noqa: F401
