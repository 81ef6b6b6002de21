"""The data layers live in netdef/data/; importing them here registers their types (SegData,
ImageData, MemoryData, DummyData, HDF5Data, Python) with the layer registry."""
from ..data import (dummy_data, hdf5_data, image_data, memory_data, python_layer,  # noqa: F401
                    seg_data)
