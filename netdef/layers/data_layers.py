"""The data layers live in netdef/data/; importing them here registers their types (SegData,
ImageData, MemoryData, DummyData, HDF5Data, HDF5Output, WindowData, Python) with the layer registry."""
from ..data import (dummy_data, hdf5_data, hdf5_output, image_data, memory_data,  # noqa: F401
                    python_layer, seg_data, window_data)
