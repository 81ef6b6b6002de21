"""Kernel sources (``*.cu``), installed as ``netdef.kernels`` so the GPU backend can find them."""
