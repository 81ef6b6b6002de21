// One thread pool for BLAS and netdef's kernels on the CPU.
//
// numpy's OpenBLAS (built with pthreads) keeps its own worker threads, which spin for a while
// after every GEMM (OPENBLAS_THREAD_TIMEOUT, ~0.1 s by default); netdef's kernels run on the
// OpenMP team of this extension, whose threads also spin after each parallel region. A
// convolution alternates the two (im2col, GEMM, col2im, ...), so on a machine with few cores
// each pool's spinning threads take the cores the other needs. OpenBLAS >= 0.3.27 lets a
// program run its parallel jobs itself (openblas_set_threads_callback_function): netdef's CPU
// backend hands it run_blas_jobs below, so GEMMs run on the same OpenMP team as the kernels
// and OpenBLAS's own workers stay asleep. See netdef/backend/blas.py.
//
// OpenBLAS's threaded level-3 routines synchronise their jobs with each other (each job waits
// for panels packed by the others), so all jobs of one call must run at the same time: every
// job gets its own thread, from the OpenMP team, or a plain std::thread for any job the team
// cannot take (inside another parallel region, or under a thread limit). Calls are serialised:
// OpenBLAS indexes per-thread scratch buffers by the job's thread number, and two concurrent
// calls (from two Python threads) would otherwise share them. OpenBLAS already serialises its
// level-3 calls the same way. In a child process after fork() the callback is removed, so that
// numpy there goes back to OpenBLAS's own threads (GNU OpenMP's team does not survive a fork).
#include <omp.h>
#include <pthread.h>

#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

namespace {

typedef void (*dojob_fn)(int thread_num, void* jobdata, int dojob_data);
typedef void (*threads_callback_fn)(int sync, dojob_fn dojob, int numjobs, size_t jobdata_elsize,
                                    void* jobdata, int dojob_data);
typedef void (*set_callback_fn)(threads_callback_fn callback);

std::mutex g_lock;
set_callback_fn g_setter = nullptr;
long long g_calls = 0;

void run_blas_jobs(int /*sync*/, dojob_fn dojob, int numjobs, size_t elsize, void* jobdata,
                   int dojob_data) {
  if (numjobs <= 0) return;
  std::lock_guard<std::mutex> guard(g_lock);
  ++g_calls;
  auto job = [&](int j) { dojob(j, static_cast<char*>(jobdata) + static_cast<size_t>(j) * elsize, dojob_data); };
  if (numjobs == 1) {
    job(0);
    return;
  }
#pragma omp parallel num_threads(numjobs)
  {
    const int t = omp_get_thread_num();
    const int team = omp_get_num_threads();
    std::vector<std::thread> extra;
    if (t == 0)
      for (int j = team; j < numjobs; ++j) extra.emplace_back(job, j);
    job(t);
    for (auto& th : extra) th.join();
  }
}

void forget_in_child() {
  if (g_setter) g_setter(nullptr);
  g_setter = nullptr;
}

}  // namespace

extern "C" {

// Registers run_blas_jobs with OpenBLAS through its openblas_set_threads_callback_function
// (address `setter`); returns 0. Passing 0 unregisters.
__attribute__((visibility("default"))) int netdef_share_blas_threads(void* setter) {
  static bool atfork_registered = false;
  std::lock_guard<std::mutex> guard(g_lock);
  if (g_setter && !setter) g_setter(nullptr);
  g_setter = reinterpret_cast<set_callback_fn>(setter);
  if (g_setter) g_setter(&run_blas_jobs);
  if (!atfork_registered) {
    pthread_atfork(nullptr, nullptr, &forget_in_child);
    atfork_registered = true;
  }
  return 0;
}

// How many parallel BLAS calls ran through netdef's threads (tests check that it works).
__attribute__((visibility("default"))) long long netdef_blas_thread_calls() { return g_calls; }

}  // extern "C"
