"""Data layers and the built-in synthetic segmentation set.

Layer types (registered through netdef/layers/data_layers.py; Data through netdef/layers/data.py):
    Data                             Datum records from LMDB / LevelDB (netdef/layers/data.py on
                                     lmdb_data.py; the record formats and .binaryproto: datum.py)
    SegData (also SegmentationData)  images + per-pixel labels, PASCAL VOC layout or the
                                     built-in synthetic set (seg_data.py, synthetic.py)
    ImageData                        images + integer labels from a list file (image_data.py)
    MemoryData                       arrays from Python: net.set_input_arrays (memory_data.py)
    DummyData                        filler-filled tops (dummy_data.py)
    HDF5Data                         HDF5 datasets, needs h5py (hdf5_data.py)
    HDF5Output                       writes its bottoms to an HDF5 file, needs h5py (hdf5_output.py)
    WindowData                       R-CNN's windows of images, warped (window_data.py)
    Python                           user layers with pycaffe's interface (python_layer.py);
                                     module "voc_layers" is FCN's, answered by voc_layers.py
The readers of Data, SegData, ImageData, HDF5Data and WindowData run in a background thread (prefetch.py) and
can be resumed: layer.get_state() / layer.set_state(state) (base.py).
"""
