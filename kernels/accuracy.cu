// Accuracy (Caffe's AccuracyLayer) on scores of `outer` x C x `inner` elements and one label per
// pixel (n = outer * inner pixels; pixel i's scores at (i / inner) * C * inner + i % inner + c * inner).
//   A pixel with label l (not ignored) is a hit when fewer than top_k classes score >= x_l
//   besides l itself: #{c : x_c >= x_l} - 1 < top_k (ties count against the true class).
//   accuracy_forward:   one thread per pixel: hit[i], valid[i] (0/1), cls[i] = l (-1 if ignored
//                       or invalid), bad[i] = 1 for a label neither ignored nor in [0, C)
//   accuracy_per_class: one thread per (class c, chunk j of `chunk` pixels): the number of valid
//                       pixels of class c in the chunk and of their hits; the layer sums chunks.
// Labels are read by common.cuh's read_label. No backward (Caffe has none).
#include "common.cuh"

KERNEL(accuracy_forward, (const index_t n, const Dtype* x, const Dtype* label, Dtype* hit,
                          Dtype* valid, Dtype* bad, index_t* cls, const index_t C,
                          const index_t inner, const index_t top_k, const index_t has_ignore,
                          const index_t ignore_label)) {
  KERNEL_LOOP_WORK(i, C) {
    const index_t l = read_label(label[i], C, has_ignore, ignore_label);
    bad[i] = l == LABEL_INVALID ? Dtype(1) : Dtype(0);
    valid[i] = l >= 0 ? Dtype(1) : Dtype(0);
    cls[i] = l >= 0 ? l : -1;
    hit[i] = Dtype(0);
    if (l >= 0) {
      const Dtype* base = x + (i / inner) * C * inner + i % inner;
      const Dtype truth = base[l * inner];
      index_t better = -1;
      for (index_t c = 0; c < C; ++c) better += base[c * inner] >= truth ? 1 : 0;
      hit[i] = better < top_k ? Dtype(1) : Dtype(0);
    }
  }
}

KERNEL(accuracy_per_class, (const index_t n, const Dtype* hit, const index_t* cls, Dtype* total,
                            Dtype* hits, const index_t pixels, const index_t chunk,
                            const index_t chunks)) {
  KERNEL_LOOP(i) {
    const index_t c = i / chunks;
    const index_t first = (i % chunks) * chunk;
    const index_t last = index_min(first + chunk, pixels);
    Dtype t = Dtype(0), h = Dtype(0);
    for (index_t p = first; p < last; ++p)
      if (cls[p] == c) {
        t += Dtype(1);
        h += hit[p];
      }
    total[i] = t;
    hits[i] = h;
  }
}
