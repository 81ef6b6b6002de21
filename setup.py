"""Builds netdef's CPU extension with CMake (see CMakeLists.txt) during `pip install .`.

The kernel sources in kernels/ are installed as the package `netdef.kernels` too, because the
GPU backend compiles them at run time with NVRTC.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("NETDEF_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY_{cfg.upper()}={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DNETDEF_SANITIZE={'ON' if os.environ.get('NETDEF_SANITIZE') else 'OFF'}",
        ]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--parallel", jobs], check=True)


setup(
    packages=["netdef", "netdef.backend", "netdef.commands", "netdef.core", "netdef.data",
              "netdef.fcn", "netdef.layers", "netdef.onnx", "netdef.pycaffe", "netdef.solver", "netdef.watch",
              "netdef.kernels"],
    package_dir={"netdef.kernels": "kernels"},
    package_data={"netdef.kernels": ["*.cu", "*.cuh"]},
    ext_modules=[CMakeExtension("netdef._cpu_kernels")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
