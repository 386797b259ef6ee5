#include "brute_force.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sla::brute {
namespace {

using Row = std::vector<double>;

at::Tensor as_double(const at::Tensor& x) { return x.detach().to(at::kDouble).contiguous(); }

Row row(const at::Tensor& x, int64_t b, int64_t h, int64_t l) {
  auto a = x.accessor<double, 4>();
  Row r(x.size(3));
  for (int64_t d = 0; d < x.size(3); ++d) r[d] = a[b][h][l][d];
  return r;
}

double dot(const Row& a, const Row& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Row phi(const Row& x, FeatureMap f) {
  Row y(x.size());
  if (f == FeatureMap::kSoftmax) {
    const double m = *std::max_element(x.begin(), x.end());
    double total = 0;
    for (size_t i = 0; i < x.size(); ++i) total += y[i] = std::exp(x[i] - m);
    for (double& e : y) e /= total;
  } else {
    for (size_t i = 0; i < x.size(); ++i) {
      y[i] = f == FeatureMap::kElu ? (x[i] > 0 ? x[i] + 1 : std::exp(x[i])) : std::max(0.0, x[i]);
    }
  }
  return y;
}

// Mean of rows [first, first + count) of x[b][h], after subtracting `shift`.
Row block_mean(const at::Tensor& x, int64_t b, int64_t h, int64_t first, int64_t count, const Row& shift) {
  Row mean(x.size(3), 0.0);
  for (int64_t l = first; l < first + count; ++l) {
    const Row r = row(x, b, h, l);
    for (size_t d = 0; d < mean.size(); ++d) mean[d] += (r[d] - shift[d]) / static_cast<double>(count);
  }
  return mean;
}

}  // namespace

std::vector<std::vector<std::vector<std::vector<int64_t>>>> block_lut(const at::Tensor& q_in, const at::Tensor& k_in,
                                                                      const SlaConfig& cfg) {
  const at::Tensor q = as_double(q_in), k = as_double(k_in);
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), Lk = k.size(2), D = q.size(3);
  const int64_t Nq = (Lq + cfg.blkq - 1) / cfg.blkq, Nk = (Lk + cfg.blkk - 1) / cfg.blkk;
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(Nk, static_cast<int64_t>(std::floor(cfg.topk * Nk))));
  std::vector<std::vector<std::vector<std::vector<int64_t>>>> lut(
      B, std::vector<std::vector<std::vector<int64_t>>>(H, std::vector<std::vector<int64_t>>(Nq)));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const Row k_mean = block_mean(k, b, h, 0, Lk, Row(D, 0.0));
      for (int64_t i = 0; i < Nq; ++i) {
        const Row pq = block_mean(q, b, h, i * cfg.blkq, std::min(cfg.blkq, Lq - i * cfg.blkq), Row(D, 0.0));
        std::vector<double> score(Nk);
        for (int64_t j = 0; j < Nk; ++j) {
          score[j] = dot(pq, block_mean(k, b, h, j * cfg.blkk, std::min(cfg.blkk, Lk - j * cfg.blkk), k_mean));
        }
        std::vector<int64_t> order(Nk);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return score[x] > score[y]; });
        order.resize(n);
        std::sort(order.begin(), order.end());
        lut[b][h][i] = order;
      }
    }
  }
  return lut;
}

at::Tensor attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& w_in,
                     const at::Tensor& b_in, const SlaConfig& cfg, double scale) {
  const at::Tensor q = as_double(q_in), k = as_double(k_in), v = as_double(v_in);
  const at::Tensor w = w_in.detach().to(at::kDouble).contiguous(), bias = b_in.detach().to(at::kDouble).contiguous();
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), Lk = k.size(2), D = q.size(3);
  const int64_t Nk = (Lk + cfg.blkk - 1) / cfg.blkk;
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto lut = block_lut(q, k, cfg);
  auto wa = w.accessor<double, 2>();
  auto ba = bias.accessor<double, 1>();

  at::Tensor out = at::zeros({B, H, Lq, D}, at::kDouble);
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t r = 0; r < Lq; ++r) {
        std::vector<bool> selected(Nk, false);
        for (int64_t j : lut[b][h][r / cfg.blkq]) selected[j] = true;
        const Row qr = row(q, b, h, r);
        const Row phi_q = phi(qr, cfg.feature_map);

        // Sparse branch: softmax over the keys of selected blocks.
        double max_score = -INFINITY;
        for (int64_t c = 0; c < Lk; ++c) {
          if (selected[c / cfg.blkk]) max_score = std::max(max_score, scale * dot(qr, row(k, b, h, c)));
        }
        Row o_s(D, 0.0);
        double weight_sum = 0;
        // Linear branch: Σ_c (φ(q)·φ(k_c)) v_c / Σ_c φ(q)·φ(k_c) over all keys or the unselected ones.
        Row numerator(D, 0.0);
        double denominator = 0;
        for (int64_t c = 0; c < Lk; ++c) {
          const Row kc = row(k, b, h, c), vc = row(v, b, h, c);
          const bool sel = selected[c / cfg.blkk];
          if (sel) {
            const double p = std::exp(scale * dot(qr, kc) - max_score);
            weight_sum += p;
            for (int64_t d = 0; d < D; ++d) o_s[d] += p * vc[d];
          }
          if (cfg.variant == Variant::kAll || !sel) {
            const double a = dot(phi_q, phi(kc, cfg.feature_map));
            denominator += a;
            for (int64_t d = 0; d < D; ++d) numerator[d] += a * vc[d];
          }
        }
        Row o_l(D, 0.0);
        if (cfg.variant == Variant::kAll) denominator += 1e-5;
        if (denominator != 0) {
          for (int64_t d = 0; d < D; ++d) o_l[d] = numerator[d] / denominator;
        }
        for (int64_t e = 0; e < D; ++e) {
          double projected = ba[e];
          for (int64_t d = 0; d < D; ++d) projected += wa[e][d] * o_l[d];
          oa[b][h][r][e] = o_s[e] / weight_sum + projected;
        }
      }
    }
  }
  return out;
}

}  // namespace sla::brute
