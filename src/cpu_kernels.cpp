// The CPU backend's extension: exposes every kernel of kernels/*.cu (compiled as C++ twice,
// float and double, see CMakeLists.txt) as a callable taking arrays (their address, through
// the buffer protocol) or int addresses for pointers, ints for sizes, and floats. An array must
// be C-contiguous, at least 1-D, and hold the kernel's dtype or int64, else the call returns
// False before the kernel runs (no exception: the refusal is an expected answer): the Python
// side (netdef/backend/cpu.py) then finds and names the bad argument, so that a launch that is
// fine costs only this conversion.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_registry.h"

namespace py = pybind11;

namespace netdef {
std::vector<KernelEntry>& kernel_table() {
  static std::vector<KernelEntry> table;
  return table;
}
}  // namespace netdef

namespace {

class Kernel {
 public:
  // the buffer-protocol format of the kernel's Dtype, from the suffix of its name (_f32, _f64)
  explicit Kernel(const netdef::KernelEntry* e)
      : entry_(e), dtype_format_(ends_with(e->name, "_f64") ? 'd' : 'f') {}

  bool call(py::args args) const {
    const std::string& sig = entry_->signature;
    if (args.size() != sig.size())
      throw py::type_error(entry_->name + " takes " + std::to_string(sig.size()) +
                           " arguments, got " + std::to_string(args.size()));
    std::vector<netdef::KernelArg> converted(sig.size());
    for (size_t k = 0; k < sig.size(); ++k) {
      py::handle a = args[k];
      netdef::KernelArg& c = converted[k];
      if (sig[k] == 'f') {
        if (!PyNumber_Check(a.ptr())) return false;  // ints, floats, numpy scalars are numbers
        c.is_float = true;
        c.f = py::cast<double>(py::float_(py::reinterpret_borrow<py::object>(a)));
      } else if (sig[k] == 'p' && PyObject_CheckBuffer(a.ptr())) {
        // an array itself: its address through the buffer protocol (cheaper than numpy's
        // .ctypes.data), once its layout and element type are the kernel's
        Py_buffer view;
        if (PyObject_GetBuffer(a.ptr(), &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
          PyErr_Clear();  // not C-contiguous (or no buffer of that kind): refused
          return false;
        }
        const char* f = view.format ? view.format : "B";
        const bool one_char = f[0] != 0 && f[1] == 0;
        const bool ok = view.ndim > 0 && one_char &&
                        (f[0] == dtype_format_ || ((f[0] == 'l' || f[0] == 'q') && view.itemsize == 8));
        c.is_float = false;
        c.i = static_cast<long long>(reinterpret_cast<std::uintptr_t>(view.buf));
        PyBuffer_Release(&view);
        if (!ok) return false;
        if (c.i == 0) c.i = 1;  // an empty array: never dereferenced, but not null
      } else {
        if (!PyIndex_Check(a.ptr())) return false;  // not an int (or an array for a pointer)
        c.is_float = false;
        c.i = py::cast<long long>(py::int_(py::reinterpret_borrow<py::object>(a)));
        if (sig[k] == 'p' && c.i == 0)
          throw py::value_error(entry_->name + ": argument " + std::to_string(k) + " is a null pointer");
      }
    }
    {
      py::gil_scoped_release release;
      entry_->call(converted.data());
    }
    return true;
  }

  std::string signature() const { return entry_->signature; }
  std::string name() const { return entry_->name; }

 private:
  static bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  }

  const netdef::KernelEntry* entry_;
  char dtype_format_;
};

}  // namespace

PYBIND11_MODULE(_cpu_kernels, m) {
  m.doc() = "netdef CPU kernels: kernels/*.cu compiled as C++";
  py::class_<Kernel>(m, "Kernel")
      .def("__call__", &Kernel::call)
      .def_property_readonly("signature", &Kernel::signature)
      .def_property_readonly("name", &Kernel::name)
      .def("__repr__", [](const Kernel& k) { return "<netdef CPU kernel " + k.name() + "(" + k.signature() + ")>"; });
  py::dict kernels;
  for (const auto& e : netdef::kernel_table()) kernels[py::str(e.name)] = Kernel(&e);
  m.attr("kernels") = kernels;
  m.attr("parallel_min_iterations") = netdef::kParallelMinIterations;
}
