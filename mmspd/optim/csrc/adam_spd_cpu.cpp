// AdamSPD's fused CPU step (mmspd.optim._adam_spd_cpu).
//
// Per parameter tensor, with d = p - a (a: the anchor, 0 for zero anchors):
//   pass 1, one read of p, g, m, v (and a): Adam's moment updates, Adam's
//     proposal q written into p, and the three sums SPD needs,
//     g.d, |d|^2 and |q - a|^2;
//   pass 2, only when SPD projects the tensor (keep = 1 - lambda r < 1):
//     p = a + keep (q - a), which reads p and a again (from cache for all
//     but the largest tensors).
// Every block of kBlock elements of every tensor of the list is one work
// item of a single parallel loop per pass. The sums are accumulated in the
// parameter's dtype over runs of kRun elements, then in double, in a fixed
// order, so the result does not depend on the number of threads. The
// per-element arithmetic is torch.optim.Adam's (lerp for m,
// sqrt(v) / sqrt(1 - b2^t) + eps).
//
// Build with -O3 -fno-math-errno (sqrt must not set errno to vectorise) and
// -fopenmp (at::parallel_for; the OpenMP runtime is the one torch loads);
// setup.py does.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

constexpr int64_t kBlock = 1 << 15;
// Elements summed in the parameter's dtype before a double accumulator.
constexpr int64_t kRun = 1 << 10;
// Elements per chunk of consecutive tensors (see step_list); 1 << 18 to
// 1 << 20 measured best on ViT shapes, larger chunks lose pass 2's cache.
constexpr int64_t kChunk = 1 << 20;

struct Hyper {
  double beta1, beta2, lr, eps, lambda;
};

#if defined(__GNUC__) && defined(__x86_64__)
#define MMSPD_X86_DISPATCH 1
#define MMSPD_INLINE inline __attribute__((always_inline))
#else
#define MMSPD_INLINE inline
#endif

// Pass 1 over elements [begin, end) of one tensor. The template flags take
// the branches out of the loop so that it vectorises. The sums run in the
// parameter's dtype over runs of kRun elements, then in double: the norms
// SPD compares are nearly equal, so their rounding matters.
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
MMSPD_INLINE void adam_block_body(T* __restrict p, const T* __restrict g,
                                  T* __restrict m, T* __restrict v,
                                  T* __restrict vmax, const A* __restrict a,
                                  int64_t begin, int64_t end, T beta2,
                                  T one_minus_beta1, T one_minus_beta2,
                                  T step_size, T bias2_sqrt, T eps,
                                  double* __restrict sums) {
  double block_dot = 0, block_dev2 = 0, block_prop2 = 0;
  for (int64_t run = begin; run < end; run += kRun) {
    const int64_t run_end = std::min(end, run + kRun);
    T dot = 0, dev2 = 0, prop2 = 0;
#pragma omp simd reduction(+ : dot, dev2, prop2)
    for (int64_t i = run; i < run_end; ++i) {
      const T gi = g[i];
      const T mi = m[i] + one_minus_beta1 * (gi - m[i]);
      const T vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      T second = vi;
      if (kAmsgrad) {
        second = vmax[i] > vi ? vmax[i] : vi;
        vmax[i] = second;
      }
      const T pi = p[i];
      const T q =
          pi - step_size * (mi / (std::sqrt(second) / bias2_sqrt + eps));
      const T ai = kAnchor ? static_cast<T>(a[i]) : T(0);
      const T d = pi - ai;
      const T e = q - ai;
      dot += gi * d;
      dev2 += d * d;
      prop2 += e * e;
      p[i] = q;
    }
    block_dot += dot;
    block_dev2 += dev2;
    block_prop2 += prop2;
  }
  sums[0] = block_dot;
  sums[1] = block_dev2;
  sums[2] = block_prop2;
}

// Pass 2 over elements [begin, end) of one tensor: p = a + keep (p - a).
template <typename T, typename A, bool kAnchor>
MMSPD_INLINE void shrink_block_body(T* __restrict p, const A* __restrict a,
                                    int64_t begin, int64_t end, T keep) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    if (kAnchor) {
      const T ai = static_cast<T>(a[i]);
      p[i] = ai + keep * (p[i] - ai);
    } else {
      p[i] = keep * p[i];
    }
  }
}

// The instruction sets the block loops are compiled for. The build targets
// the baseline of its architecture (SSE2 on x86-64) so that the module runs
// on any machine; on x86-64 the loops are also compiled for AVX2 and
// AVX-512 (GCC's target attribute, no FMA: the same operations and
// rounding per element) and picked at run time. Memory-bound on slow
// memory, the step is compute-bound with SSE2 on fast memory.
enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    default:
      return "baseline";
  }
}

Isa best_isa() {
#ifdef MMSPD_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

Isa& active_isa() {
  static Isa isa = best_isa();
  return isa;
}

#define MMSPD_ADAM_BLOCK_ARGS                                               \
  T *__restrict p, const T *__restrict g, T *__restrict m,                  \
      T *__restrict v, T *__restrict vmax, const A *__restrict a,           \
      int64_t begin, int64_t end, T beta2, T one_minus_beta1,               \
      T one_minus_beta2, T step_size, T bias2_sqrt, T eps,                  \
      double *__restrict sums
#define MMSPD_ADAM_BLOCK_CALL                                               \
  p, g, m, v, vmax, a, begin, end, beta2, one_minus_beta1, one_minus_beta2, \
      step_size, bias2_sqrt, eps, sums

template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void adam_block_baseline(MMSPD_ADAM_BLOCK_ARGS) {
  adam_block_body<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
}

template <typename T, typename A, bool kAnchor>
void shrink_block_baseline(T* p, const A* a, int64_t begin, int64_t end,
                           T keep) {
  shrink_block_body<T, A, kAnchor>(p, a, begin, end, keep);
}

#ifdef MMSPD_X86_DISPATCH
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
__attribute__((target("avx2"))) void adam_block_avx2(MMSPD_ADAM_BLOCK_ARGS) {
  adam_block_body<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
}

template <typename T, typename A, bool kAnchor, bool kAmsgrad>
__attribute__((target("avx512f"))) void adam_block_avx512(
    MMSPD_ADAM_BLOCK_ARGS) {
  adam_block_body<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
}

template <typename T, typename A, bool kAnchor>
__attribute__((target("avx2"))) void shrink_block_avx2(T* p, const A* a,
                                                       int64_t begin,
                                                       int64_t end, T keep) {
  shrink_block_body<T, A, kAnchor>(p, a, begin, end, keep);
}

template <typename T, typename A, bool kAnchor>
__attribute__((target("avx512f"))) void shrink_block_avx512(
    T* p, const A* a, int64_t begin, int64_t end, T keep) {
  shrink_block_body<T, A, kAnchor>(p, a, begin, end, keep);
}
#endif

template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void adam_block(Isa isa, MMSPD_ADAM_BLOCK_ARGS) {
#ifdef MMSPD_X86_DISPATCH
  if (isa == Isa::kAvx512) {
    return adam_block_avx512<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
  }
  if (isa == Isa::kAvx2) {
    return adam_block_avx2<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
  }
#endif
  adam_block_baseline<T, A, kAnchor, kAmsgrad>(MMSPD_ADAM_BLOCK_CALL);
}

template <typename T, typename A, bool kAnchor>
void shrink_block(Isa isa, T* p, const A* a, int64_t begin, int64_t end,
                  T keep) {
#ifdef MMSPD_X86_DISPATCH
  if (isa == Isa::kAvx512) {
    return shrink_block_avx512<T, A, kAnchor>(p, a, begin, end, keep);
  }
  if (isa == Isa::kAvx2) {
    return shrink_block_avx2<T, A, kAnchor>(p, a, begin, end, keep);
  }
#endif
  shrink_block_baseline<T, A, kAnchor>(p, a, begin, end, keep);
}

// One tensor's buffers (vmax / a null when unused) and step count.
struct TensorArgs {
  void* p;
  const void* g;
  void* m;
  void* v;
  void* vmax;
  const void* a;
  int64_t n;
  double step;
};

// A block of one tensor: the unit of parallel work.
struct Block {
  size_t tensor;
  int64_t begin, end;
};

// The blocks of `count` tensors; first_block[t] is tensor t's first block
// (first_block[count] == blocks.size()).
std::vector<Block> make_blocks(const TensorArgs* tensors, size_t count,
                               std::vector<size_t>* first_block) {
  std::vector<Block> blocks;
  first_block->assign(count + 1, 0);
  for (size_t t = 0; t < count; ++t) {
    (*first_block)[t] = blocks.size();
    for (int64_t begin = 0; begin < tensors[t].n; begin += kBlock) {
      blocks.push_back({t, begin, std::min(tensors[t].n, begin + kBlock)});
    }
  }
  (*first_block)[count] = blocks.size();
  return blocks;
}

// Pass 1 over every block of `count` tensors in one parallel loop: Adam's
// moments, the proposal q written into p, and per tensor the sums g.d,
// |d|^2, |q - a|^2 (block sums added in block order: thread-independent),
// written to tensor_sums[3 t + 0..2].
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void propose_blocks(const TensorArgs* tensors, size_t count, const Hyper& h,
                    const std::vector<Block>& blocks,
                    const std::vector<size_t>& first_block,
                    double* tensor_sums) {
  const Isa isa = active_isa();
  const T beta2 = static_cast<T>(h.beta2);
  const T one_minus_beta1 = static_cast<T>(1 - h.beta1);
  const T one_minus_beta2 = static_cast<T>(1 - h.beta2);
  const T eps = static_cast<T>(h.eps);
  std::vector<T> step_sizes(count), bias2_sqrts(count);
  for (size_t t = 0; t < count; ++t) {
    const double step = tensors[t].step;
    step_sizes[t] = static_cast<T>(h.lr / (1 - std::pow(h.beta1, step)));
    bias2_sqrts[t] = static_cast<T>(std::sqrt(1 - std::pow(h.beta2, step)));
  }
  std::vector<double> sums(3 * blocks.size());
  at::parallel_for(0, blocks.size(), 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const Block& blk = blocks[b];
      const TensorArgs& x = tensors[blk.tensor];
      adam_block<T, A, kAnchor, kAmsgrad>(
          isa, static_cast<T*>(x.p), static_cast<const T*>(x.g),
          static_cast<T*>(x.m), static_cast<T*>(x.v),
          static_cast<T*>(x.vmax), static_cast<const A*>(x.a), blk.begin,
          blk.end, beta2, one_minus_beta1, one_minus_beta2,
          step_sizes[blk.tensor], bias2_sqrts[blk.tensor], eps,
          &sums[3 * b]);
    }
  });
  for (size_t t = 0; t < count; ++t) {
    double dot = 0, dev2 = 0, prop2 = 0;
    for (size_t b = first_block[t]; b < first_block[t + 1]; ++b) {
      dot += sums[3 * b];
      dev2 += sums[3 * b + 1];
      prop2 += sums[3 * b + 2];
    }
    tensor_sums[3 * t] = dot;
    tensor_sums[3 * t + 1] = dev2;
    tensor_sums[3 * t + 2] = prop2;
  }
}

// Pass 2: p = a + keep (p - a) over the blocks of tensors whose keep is not
// 1. The same split of the blocks over the threads as pass 1, walked
// backwards: each thread starts with the blocks it touched last, still in
// its cache.
template <typename T, typename A, bool kAnchor>
void shrink_blocks(const TensorArgs* tensors,
                   const std::vector<Block>& blocks, const T* keeps) {
  const Isa isa = active_isa();
  at::parallel_for(0, blocks.size(), 1, [&](int64_t first, int64_t last) {
    for (int64_t b = last - 1; b >= first; --b) {
      const Block& blk = blocks[b];
      if (keeps[blk.tensor] == T(1)) continue;
      const TensorArgs& x = tensors[blk.tensor];
      shrink_block<T, A, kAnchor>(isa, static_cast<T*>(x.p),
                                  static_cast<const A*>(x.a), blk.begin,
                                  blk.end, keeps[blk.tensor]);
    }
  });
}

// Steps all tensors of a list: every block of every tensor is one work
// item, so the list takes two parallel regions (one per pass) whatever its
// number of tensors, and small tensors are spread over the threads too.
// Writes each tensor's ratio r (0 where not projected) into `ratios`.
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void step_chunk(const TensorArgs* tensors, size_t count, const Hyper& h,
                double* ratios) {
  std::vector<size_t> first_block;
  const std::vector<Block> blocks = make_blocks(tensors, count, &first_block);
  std::vector<double> sums(3 * count);
  propose_blocks<T, A, kAnchor, kAmsgrad>(tensors, count, h, blocks,
                                          first_block, sums.data());
  std::vector<T> keeps(count, T(1));
  bool any_shrink = false;
  for (size_t t = 0; t < count; ++t) {
    // SPD's condition: the gradient does not pull toward the anchor.
    const double dot = sums[3 * t];
    const double proposal_norm = std::sqrt(sums[3 * t + 2]);
    double ratio = 0;
    if (dot > 0 && proposal_norm > 0) {
      ratio = std::clamp(
          (proposal_norm - std::sqrt(sums[3 * t + 1])) / proposal_norm, 0.0,
          1.0);
    }
    ratios[t] = ratio;
    if (ratio > 0 && h.lambda != 0) {
      keeps[t] = static_cast<T>(1 - h.lambda * ratio);
      any_shrink = true;
    }
  }
  if (any_shrink) shrink_blocks<T, A, kAnchor>(tensors, blocks, keeps.data());
}

// The chunks of consecutive tensors, about kChunk elements each, that
// step_list and propose_list walk: [bounds[i], bounds[i + 1]).
std::vector<size_t> chunk_bounds(const std::vector<TensorArgs>& tensors) {
  std::vector<size_t> bounds{0};
  size_t first = 0;
  while (first < tensors.size()) {
    size_t last = first;
    int64_t numel = 0;
    do {
      numel += tensors[last++].n;
    } while (last < tensors.size() && numel + tensors[last].n <= kChunk);
    bounds.push_back(last);
    first = last;
  }
  return bounds;
}

template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void step_list(const std::vector<TensorArgs>& tensors, const Hyper& h,
               double* ratios) {
  const std::vector<size_t> bounds = chunk_bounds(tensors);
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    step_chunk<T, A, kAnchor, kAmsgrad>(&tensors[bounds[c]],
                                        bounds[c + 1] - bounds[c], h,
                                        ratios + bounds[c]);
  }
}

// Pass 1 only, chunk by chunk; per tensor sums into sums[3 t + 0..2].
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void propose_list(const std::vector<TensorArgs>& tensors, const Hyper& h,
                  double* sums) {
  const std::vector<size_t> bounds = chunk_bounds(tensors);
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    const size_t count = bounds[c + 1] - bounds[c];
    std::vector<size_t> first_block;
    const std::vector<Block> blocks =
        make_blocks(&tensors[bounds[c]], count, &first_block);
    propose_blocks<T, A, kAnchor, kAmsgrad>(&tensors[bounds[c]], count, h,
                                            blocks, first_block,
                                            sums + 3 * bounds[c]);
  }
}

// What a call does with the lists: a whole step, or pass 1 only.
enum class Mode { kStep, kPropose };

template <typename T, typename A>
void run_list(Mode mode, const std::vector<TensorArgs>& tensors,
              bool anchored, bool amsgrad, const Hyper& h, double* out) {
#define MMSPD_RUN(ANCHOR, AMSGRAD)                                  \
  (mode == Mode::kStep                                              \
       ? step_list<T, A, ANCHOR, AMSGRAD>(tensors, h, out)          \
       : propose_list<T, A, ANCHOR, AMSGRAD>(tensors, h, out))
  if (anchored) {
    amsgrad ? MMSPD_RUN(true, true) : MMSPD_RUN(true, false);
  } else {
    amsgrad ? MMSPD_RUN(false, true) : MMSPD_RUN(false, false);
  }
#undef MMSPD_RUN
}

void check_tensor(const torch::Tensor& t, const torch::Tensor& param,
                  const char* what, size_t index, bool same_dtype) {
  TORCH_CHECK(t.defined() && t.device().is_cpu() && t.is_contiguous() &&
                  t.numel() == param.numel() &&
                  (!same_dtype || t.scalar_type() == param.scalar_type()),
              "adam_spd_cpu: ", what, "[", index,
              "] must be a contiguous CPU tensor with ", param.numel(),
              " elements", same_dtype ? " of the parameter's dtype" : "",
              "; got ", t.defined() ? t.toString() : std::string("None"),
              " of shape ", t.defined() ? t.sizes() : torch::IntArrayRef{});
}

// Checks params (contiguous CPU float32/float64 of one dtype) and anchors
// (empty, or one per parameter, of one floating dtype); returns that dtype.
torch::ScalarType check_params_and_anchors(
    const std::vector<torch::Tensor>& params,
    const std::vector<torch::Tensor>& anchors) {
  const size_t count = params.size();
  TORCH_CHECK(anchors.empty() || anchors.size() == count,
              "adam_spd_cpu: the tensor lists must have one entry per "
              "parameter (", count, ")");
  const auto dtype = count ? params[0].scalar_type() : torch::kFloat;
  const auto anchor_dtype = anchors.empty() ? dtype : anchors[0].scalar_type();
  for (size_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    check_tensor(p, p, "params", i, true);
    TORCH_CHECK(p.scalar_type() == torch::kFloat ||
                    p.scalar_type() == torch::kDouble,
                "adam_spd_cpu: params[", i, "] must be float32 or float64, "
                "got ", p.scalar_type());
    TORCH_CHECK(p.scalar_type() == dtype,
                "adam_spd_cpu: all params must share one dtype; params[", i,
                "] is ", p.scalar_type(), ", params[0] ", dtype);
    if (!anchors.empty()) {
      check_tensor(anchors[i], p, "anchors", i, false);
      TORCH_CHECK(anchors[i].scalar_type() == anchor_dtype,
                  "adam_spd_cpu: all anchors must share one dtype; anchors[",
                  i, "] is ", anchors[i].scalar_type(), ", anchors[0] ",
                  anchor_dtype);
    }
  }
  return anchor_dtype;
}

// Calls fn.template operator()<T, A>() for the parameters' dtype T and the
// anchors' dtype A (nothing has been changed when it raises).
template <typename Fn>
void dispatch_dtypes(torch::ScalarType dtype, torch::ScalarType anchor_dtype,
                     const Fn& fn) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "adam_spd_cpu", [&] {
    using T = scalar_t;
    switch (anchor_dtype) {
      case torch::kBFloat16:
        fn.template operator()<T, at::BFloat16>();
        break;
      case torch::kHalf:
        fn.template operator()<T, at::Half>();
        break;
      case torch::kFloat:
        fn.template operator()<T, float>();
        break;
      case torch::kDouble:
        fn.template operator()<T, double>();
        break;
      default:
        TORCH_CHECK(false, "adam_spd_cpu: anchors must be float16, "
                    "bfloat16, float32 or float64, got ", anchor_dtype);
    }
  });
}

// Pass 1 (kPropose: the per-tensor sums, [count, 3]) or the whole step
// (kStep: the per-tensor ratios, [count]) of the lists, in place.
torch::Tensor run_lists(Mode mode, const std::vector<torch::Tensor>& params,
                        const std::vector<torch::Tensor>& grads,
                        const std::vector<torch::Tensor>& exp_avgs,
                        const std::vector<torch::Tensor>& exp_avg_sqs,
                        const std::vector<torch::Tensor>& max_exp_avg_sqs,
                        const std::vector<torch::Tensor>& anchors,
                        const std::vector<double>& steps, double beta1,
                        double beta2, double lr, double eps,
                        double weight_decay) {
  const size_t count = params.size();
  TORCH_CHECK(grads.size() == count && exp_avgs.size() == count &&
                  exp_avg_sqs.size() == count && steps.size() == count &&
                  (max_exp_avg_sqs.empty() ||
                   max_exp_avg_sqs.size() == count),
              "adam_spd_cpu: the tensor lists must have one entry per "
              "parameter (", count, ")");
  const auto anchor_dtype = check_params_and_anchors(params, anchors);
  const bool anchored = !anchors.empty();
  const bool amsgrad = !max_exp_avg_sqs.empty();
  for (size_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    check_tensor(grads[i], p, "grads", i, true);
    check_tensor(exp_avgs[i], p, "exp_avgs", i, true);
    check_tensor(exp_avg_sqs[i], p, "exp_avg_sqs", i, true);
    if (amsgrad) {
      check_tensor(max_exp_avg_sqs[i], p, "max_exp_avg_sqs", i, true);
    }
  }
  std::vector<TensorArgs> tensors(count);
  for (size_t i = 0; i < count; ++i) {
    tensors[i] = {params[i].data_ptr(),
                  grads[i].data_ptr(),
                  exp_avgs[i].data_ptr(),
                  exp_avg_sqs[i].data_ptr(),
                  amsgrad ? max_exp_avg_sqs[i].data_ptr() : nullptr,
                  anchored ? anchors[i].data_ptr() : nullptr,
                  params[i].numel(),
                  steps[i]};
  }
  const Hyper hyper{beta1, beta2, lr, eps, weight_decay};
  const int64_t n = static_cast<int64_t>(count);
  auto out = mode == Mode::kStep
                 ? torch::zeros({n}, torch::dtype(torch::kFloat64))
                 : torch::zeros({n, 3}, torch::dtype(torch::kFloat64));
  double* data = out.data_ptr<double>();
  const auto dtype = count ? params[0].scalar_type() : torch::kFloat;
  pybind11::gil_scoped_release no_gil;
  dispatch_dtypes(dtype, anchor_dtype, [&]<typename T, typename A>() {
    run_list<T, A>(mode, tensors, anchored, amsgrad, hyper, data);
  });
  return out;
}

}  // namespace

// Steps the tensors of the lists in place (contiguous CPU tensors, float32
// or float64 parameters; anchors of any floating dtype or an empty list for
// zero anchors; max_exp_avg_sqs empty unless amsgrad). `steps` are the step
// counts after this step's increment. Returns the per-tensor projection
// ratios (0 where not projected) as a float64 tensor.
torch::Tensor adam_spd_step(const std::vector<torch::Tensor>& params,
                            const std::vector<torch::Tensor>& grads,
                            const std::vector<torch::Tensor>& exp_avgs,
                            const std::vector<torch::Tensor>& exp_avg_sqs,
                            const std::vector<torch::Tensor>& max_exp_avg_sqs,
                            const std::vector<torch::Tensor>& anchors,
                            const std::vector<double>& steps, double beta1,
                            double beta2, double lr, double eps,
                            double weight_decay) {
  return run_lists(Mode::kStep, params, grads, exp_avgs, exp_avg_sqs,
                   max_exp_avg_sqs, anchors, steps, beta1, beta2, lr, eps,
                   weight_decay);
}

// Pass 1 of the step alone (same arguments, no lambda): moments updated,
// Adam's proposal q written into the parameters. Returns the per-tensor
// sums g.(p - a), |p - a|^2, |q - a|^2 as a [count, 3] float64 tensor, so
// that a sharded step can reduce them over the shards before
// adam_spd_project.
torch::Tensor adam_spd_propose(
    const std::vector<torch::Tensor>& params,
    const std::vector<torch::Tensor>& grads,
    const std::vector<torch::Tensor>& exp_avgs,
    const std::vector<torch::Tensor>& exp_avg_sqs,
    const std::vector<torch::Tensor>& max_exp_avg_sqs,
    const std::vector<torch::Tensor>& anchors,
    const std::vector<double>& steps, double beta1, double beta2, double lr,
    double eps) {
  return run_lists(Mode::kPropose, params, grads, exp_avgs, exp_avg_sqs,
                   max_exp_avg_sqs, anchors, steps, beta1, beta2, lr, eps,
                   0.0);
}

// Pass 2 alone: p = a + keep (p - a) (p = keep p for zero anchors) for
// every tensor whose keep differs from 1; keeps holds one factor per
// parameter.
void adam_spd_project(const std::vector<torch::Tensor>& params,
                      const std::vector<torch::Tensor>& anchors,
                      const std::vector<double>& keeps) {
  const size_t count = params.size();
  TORCH_CHECK(keeps.size() == count, "adam_spd_cpu: keeps must have one "
              "entry per parameter (", count, "), got ", keeps.size());
  const auto anchor_dtype = check_params_and_anchors(params, anchors);
  const bool anchored = !anchors.empty();
  std::vector<TensorArgs> tensors(count);
  for (size_t i = 0; i < count; ++i) {
    tensors[i] = {params[i].data_ptr(), nullptr, nullptr, nullptr, nullptr,
                  anchored ? anchors[i].data_ptr() : nullptr,
                  params[i].numel(), 0.0};
  }
  const auto dtype = count ? params[0].scalar_type() : torch::kFloat;
  pybind11::gil_scoped_release no_gil;
  dispatch_dtypes(dtype, anchor_dtype, [&]<typename T, typename A>() {
    std::vector<T> typed(keeps.begin(), keeps.end());
    std::vector<size_t> first_block;
    const std::vector<Block> blocks =
        make_blocks(tensors.data(), count, &first_block);
    anchored ? shrink_blocks<T, A, true>(tensors.data(), blocks, typed.data())
             : shrink_blocks<T, A, false>(tensors.data(), blocks,
                                          typed.data());
  });
}

// The instruction set the block loops run with ("baseline", "avx2" or
// "avx512"); set_cpu_isa picks another one the CPU supports (for tests and
// benchmarks), "best" the default.
std::string cpu_isa() { return isa_name(active_isa()); }

void set_cpu_isa(const std::string& name) {
  const Isa best = best_isa();
  Isa wanted;
  if (name == "best") {
    wanted = best;
  } else if (name == "baseline") {
    wanted = Isa::kBaseline;
  } else if (name == "avx2") {
    wanted = Isa::kAvx2;
  } else if (name == "avx512") {
    wanted = Isa::kAvx512;
  } else {
    TORCH_CHECK(false, "adam_spd_cpu: unknown instruction set '", name,
                "': expected best, baseline, avx2 or avx512");
  }
  TORCH_CHECK(static_cast<int>(wanted) <= static_cast<int>(best),
              "adam_spd_cpu: this CPU (or build) does not support ", name,
              "; the best it supports is ", isa_name(best));
  active_isa() = wanted;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_isa", &cpu_isa,
        "instruction set the kernel's loops run with");
  m.def("set_cpu_isa", &set_cpu_isa,
        "pick the instruction set: best, baseline, avx2 or avx512");
  m.def("adam_spd_step", &adam_spd_step,
        "AdamSPD step over lists of contiguous CPU tensors, in place; "
        "returns the per-tensor projection ratios (float64)");
  m.def("adam_spd_propose", &adam_spd_propose,
        "pass 1 of the step alone (proposal written into the parameters); "
        "returns the per-tensor sums g.(p-a), |p-a|^2, |q-a|^2 [n, 3]");
  m.def("adam_spd_project", &adam_spd_project,
        "pass 2 alone: p = a + keep (p - a) where keep != 1");
}
