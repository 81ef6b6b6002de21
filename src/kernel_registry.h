// Registry of CPU kernels: every KERNEL(...) in kernels/*.cu, compiled as C++, adds itself
// here with a type-erased caller, so one pybind11 binding in cpu_kernels.cpp serves them all.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace netdef {

// A KERNEL_LOOP of more iterations than this runs on the OpenMP team; shorter loops stay on
// the calling thread, where a parallel region would cost more than it saves. The Python side
// reads it (_cpu_kernels.parallel_min_iterations) to size the row segments of tiled kernels.
constexpr long long kParallelMinIterations = 32768;

// One argument as it comes from Python: an int (also used for pointers) or a float.
struct KernelArg {
  bool is_float;
  long long i;
  double f;
};

// Signature codes, checked before a call: 'p' pointer, 'i' integer, 'f' floating point.
struct KernelEntry {
  std::string name;
  std::string signature;
  std::function<void(const KernelArg*)> call;
};

std::vector<KernelEntry>& kernel_table();

template <typename T, typename Enable = void>
struct ArgCodec;
template <typename T>
struct ArgCodec<T*> {
  static constexpr char code = 'p';
  static T* get(const KernelArg& a) { return reinterpret_cast<T*>(static_cast<std::uintptr_t>(a.i)); }
};
template <typename T>
struct ArgCodec<T, typename std::enable_if<std::is_integral<T>::value>::type> {
  static constexpr char code = 'i';
  static T get(const KernelArg& a) { return static_cast<T>(a.i); }
};
template <typename T>
struct ArgCodec<T, typename std::enable_if<std::is_floating_point<T>::value>::type> {
  static constexpr char code = 'f';
  static T get(const KernelArg& a) { return static_cast<T>(a.is_float ? a.f : (double)a.i); }
};

template <typename... A, std::size_t... I>
void invoke_kernel(void (*fn)(A...), const KernelArg* args, std::index_sequence<I...>) {
  fn(ArgCodec<A>::get(args[I])...);
}

struct KernelRegistrar {
  template <typename... A>
  KernelRegistrar(const char* name, void (*fn)(A...)) {
    KernelEntry e;
    e.name = name;
    e.signature = std::string{ArgCodec<A>::code...};
    e.call = [fn](const KernelArg* args) { invoke_kernel(fn, args, std::index_sequence_for<A...>{}); };
    kernel_table().push_back(std::move(e));
  }
};

}  // namespace netdef
