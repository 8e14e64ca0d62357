// AdamSPD's fused CPU step (mmspd.optim._adam_spd_cpu).
//
// Per parameter tensor, with d = p - a (a: the anchor, 0 for zero anchors):
//   pass 1, one read of p, g, m, v (and a): Adam's moment updates, Adam's
//     proposal q written into p, and the three sums SPD needs,
//     g.d, |d|^2 and |q - a|^2;
//   pass 2, only when SPD projects the tensor (keep = 1 - lambda r < 1):
//     p = a + keep (q - a), which reads p and a again (from cache for all
//     but the largest tensors).
// The sums are accumulated per block of kBlock elements in the parameter's
// dtype, then over blocks in double in block order, so the result does not
// depend on the number of threads. The per-element arithmetic is
// torch.optim.Adam's (lerp for m, sqrt(v) / sqrt(1 - b2^t) + eps).
//
// Build with -O3 -fno-math-errno (sqrt must not set errno to vectorise) and
// -fopenmp (at::parallel_for; the OpenMP runtime is the one torch loads).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

constexpr int64_t kBlock = 1 << 15;

struct Hyper {
  double beta1, beta2, lr, eps, lambda;
};

// Pass 1 over elements [begin, end) of one tensor. The template flags take
// the branches out of the loop so that it vectorises.
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
void adam_block(T* __restrict p, const T* __restrict g, T* __restrict m,
                T* __restrict v, T* __restrict vmax, const A* __restrict a,
                int64_t begin, int64_t end, T beta2, T one_minus_beta1,
                T one_minus_beta2, T step_size, T bias2_sqrt, T eps,
                T* __restrict sums) {
  T dot = 0, dev2 = 0, prop2 = 0;
#pragma omp simd reduction(+ : dot, dev2, prop2)
  for (int64_t i = begin; i < end; ++i) {
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
    const T q = pi - step_size * (mi / (std::sqrt(second) / bias2_sqrt + eps));
    const T ai = kAnchor ? static_cast<T>(a[i]) : T(0);
    const T d = pi - ai;
    const T e = q - ai;
    dot += gi * d;
    dev2 += d * d;
    prop2 += e * e;
    p[i] = q;
  }
  sums[0] = dot;
  sums[1] = dev2;
  sums[2] = prop2;
}

// Pass 2: p = a + keep (p - a) over the whole tensor.
template <typename T, typename A, bool kAnchor>
void shrink_toward_anchor(T* __restrict p, const A* __restrict a, int64_t n,
                          T keep) {
  at::parallel_for(0, n, kBlock, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      if (kAnchor) {
        const T ai = static_cast<T>(a[i]);
        p[i] = ai + keep * (p[i] - ai);
      } else {
        p[i] = keep * p[i];
      }
    }
  });
}

// Steps one tensor; returns SPD's ratio r (0 where not projected).
template <typename T, typename A, bool kAnchor, bool kAmsgrad>
double step_tensor(T* p, const T* g, T* m, T* v, T* vmax, const A* a,
                   int64_t n, double step, const Hyper& h) {
  const T beta2 = static_cast<T>(h.beta2);
  const T one_minus_beta1 = static_cast<T>(1 - h.beta1);
  const T one_minus_beta2 = static_cast<T>(1 - h.beta2);
  const T step_size = static_cast<T>(h.lr / (1 - std::pow(h.beta1, step)));
  const T bias2_sqrt = static_cast<T>(std::sqrt(1 - std::pow(h.beta2, step)));
  const T eps = static_cast<T>(h.eps);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<T> sums(3 * blocks);
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      adam_block<T, A, kAnchor, kAmsgrad>(
          p, g, m, v, vmax, a, b * kBlock, std::min(n, (b + 1) * kBlock),
          beta2, one_minus_beta1, one_minus_beta2, step_size, bias2_sqrt,
          eps, &sums[3 * b]);
    }
  });
  double dot = 0, dev2 = 0, prop2 = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    dot += sums[3 * b];
    dev2 += sums[3 * b + 1];
    prop2 += sums[3 * b + 2];
  }
  // SPD's condition: the gradient does not pull toward the anchor.
  const double proposal_norm = std::sqrt(prop2);
  if (!(dot > 0) || !(proposal_norm > 0)) return 0.0;
  const double ratio = std::clamp(
      (proposal_norm - std::sqrt(dev2)) / proposal_norm, 0.0, 1.0);
  if (ratio > 0 && h.lambda != 0) {
    shrink_toward_anchor<T, A, kAnchor>(p, a, n,
                                        static_cast<T>(1 - h.lambda * ratio));
  }
  return ratio;
}

template <typename T, typename A>
double step_any(T* p, const T* g, T* m, T* v, T* vmax, const A* a, int64_t n,
                double step, const Hyper& h) {
  if (a != nullptr) {
    return vmax != nullptr
               ? step_tensor<T, A, true, true>(p, g, m, v, vmax, a, n, step, h)
               : step_tensor<T, A, true, false>(p, g, m, v, vmax, a, n, step,
                                                h);
  }
  return vmax != nullptr
             ? step_tensor<T, A, false, true>(p, g, m, v, vmax, a, n, step, h)
             : step_tensor<T, A, false, false>(p, g, m, v, vmax, a, n, step,
                                               h);
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
  const size_t count = params.size();
  TORCH_CHECK(grads.size() == count && exp_avgs.size() == count &&
                  exp_avg_sqs.size() == count && steps.size() == count &&
                  (max_exp_avg_sqs.empty() ||
                   max_exp_avg_sqs.size() == count) &&
                  (anchors.empty() || anchors.size() == count),
              "adam_spd_cpu: the tensor lists must have one entry per "
              "parameter (", count, ")");
  for (size_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    check_tensor(p, p, "params", i, true);
    TORCH_CHECK(p.scalar_type() == torch::kFloat ||
                    p.scalar_type() == torch::kDouble,
                "adam_spd_cpu: params[", i, "] must be float32 or float64, "
                "got ", p.scalar_type());
    check_tensor(grads[i], p, "grads", i, true);
    check_tensor(exp_avgs[i], p, "exp_avgs", i, true);
    check_tensor(exp_avg_sqs[i], p, "exp_avg_sqs", i, true);
    if (!max_exp_avg_sqs.empty()) {
      check_tensor(max_exp_avg_sqs[i], p, "max_exp_avg_sqs", i, true);
    }
    if (!anchors.empty()) check_tensor(anchors[i], p, "anchors", i, false);
  }
  const Hyper hyper{beta1, beta2, lr, eps, weight_decay};
  auto ratios = torch::zeros({static_cast<int64_t>(count)},
                             torch::dtype(torch::kFloat64));
  double* out = ratios.data_ptr<double>();
  pybind11::gil_scoped_release no_gil;
  for (size_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    const torch::Tensor vmax =
        max_exp_avg_sqs.empty() ? torch::Tensor() : max_exp_avg_sqs[i];
    const torch::Tensor anchor = anchors.empty() ? torch::Tensor() : anchors[i];
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "adam_spd_step", [&] {
      using T = scalar_t;
      T* vmax_ptr = vmax.defined() ? vmax.data_ptr<T>() : nullptr;
      auto run = [&](auto* anchor_ptr) {
        out[i] = step_any<T>(p.data_ptr<T>(), grads[i].data_ptr<T>(),
                             exp_avgs[i].data_ptr<T>(),
                             exp_avg_sqs[i].data_ptr<T>(), vmax_ptr,
                             anchor_ptr, p.numel(), steps[i], hyper);
      };
      if (!anchor.defined()) {
        run(static_cast<const T*>(nullptr));
      } else if (anchor.scalar_type() == p.scalar_type()) {
        run(anchor.data_ptr<T>());
      } else if (anchor.scalar_type() == torch::kBFloat16) {
        run(anchor.data_ptr<at::BFloat16>());
      } else if (anchor.scalar_type() == torch::kHalf) {
        run(anchor.data_ptr<at::Half>());
      } else if (anchor.scalar_type() == torch::kFloat) {
        run(anchor.data_ptr<float>());
      } else {
        run(anchor.data_ptr<double>());
      }
    });
  }
  return ratios;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adam_spd_step", &adam_spd_step,
        "AdamSPD step over lists of contiguous CPU tensors, in place; "
        "returns the per-tensor projection ratios (float64)");
}
