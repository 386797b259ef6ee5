// Runtime dispatch onto the instantiation matrix (support.h's table through static_switch.h) and
// the block-map launches. The precondition check is can_implement (support.cpp).
#include "block_map_kernel.cuh"
#include "cuda_check.h"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sla::kernels {

namespace {
// A nonzero property of the current device, computed by ask(device) once per device.
class PerDevice {
 public:
  template <class Ask>
  int get(Ask&& ask) {
    int device = 0;
    SLA_CUDA_CHECK(cudaGetDevice(&device));
    if (device >= int(known_.size())) return ask(device);
    int value = known_[device].load(std::memory_order_relaxed);
    if (value == 0) {
      value = ask(device);
      known_[device].store(value, std::memory_order_relaxed);
    }
    return value;
  }

 private:
  std::array<std::atomic<int>, 64> known_{};  // 0 until asked
};

// 32-key-block words of the transpose's bitmask per query block, 0 when one word per query block
// exceeds the budget. More words: fewer CTAs reading the same LUT; the cap keeps the grid wide.
// Nk <= 4 Nq (block sizes 32..128), so the chunks stay within grid.y's 65535 when Nq fits.
int lut_transpose_words(int num_q_blocks, int num_k_blocks) {
  const int64_t fit = kTransposeSmemBudget / (int64_t(num_q_blocks) * 4);
  return int(std::min<int64_t>({fit, kTransposeMaxWords, (num_k_blocks + 31) / 32}));
}
}  // namespace

void run_block_pool(const SlaParams& p, float* sums, int max_blocks, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      sla_pool_kernel<Elem, kD><<<dim3(max_blocks, p.batch * p.heads, 2), kPoolThreads, 0, stream>>>(p, sums, max_blocks);
      SLA_CUDA_CHECK_LAUNCH();
    });
  });
}

void run_smooth_k(const SlaParams& p, float* sums, int max_blocks, cudaStream_t stream) {
  SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
    const dim3 grid(unsigned(p.batch * p.heads), unsigned(kD / kSmoothDims));
    sla_smooth_k_kernel<kD><<<grid, kSmoothThreads, 0, stream>>>(p, sums, max_blocks);
    SLA_CUDA_CHECK_LAUNCH();
  });
}

void run_block_scores_select(const SlaParams& p, const float* sums, int max_blocks, float* scores, int bh0,
                             int bh_count, cudaStream_t stream) {
  // Tiles of 64 x 64 where they give every multiprocessor a CTA, else of 32 x 32 (four times the CTAs).
  const auto tiles = [&](int t) {
    return int64_t((p.num_k_blocks + t - 1) / t) * ((p.num_q_blocks + t - 1) / t) * bh_count;
  };
  const auto launch_scores = [&](auto kernel, int t, int smem) {
    set_dynamic_smem(kernel, smem);
    const dim3 grid(unsigned((p.num_k_blocks + t - 1) / t), unsigned((p.num_q_blocks + t - 1) / t),
                    unsigned(bh_count));
    kernel<<<grid, kScoreThreads, smem, stream>>>(p, sums, max_blocks, bh0, scores);
    SLA_CUDA_CHECK_LAUNCH();
  };
  SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
    if (tiles(64) >= multiprocessor_count()) {
      launch_scores(&sla_block_scores_kernel<kD, 64>, 64, block_scores_smem_bytes<kD, 64>());
    } else {
      launch_scores(&sla_block_scores_kernel<kD, 32>, 32, block_scores_smem_bytes<kD, 32>());
    }
  });
  const int rows = bh_count * p.num_q_blocks, warps = kSelectThreads / 32;
  const dim3 grid(unsigned((rows + warps - 1) / warps));
  if (p.num_k_blocks <= 32 * 4) {
    sla_select_rows_kernel<4><<<grid, kSelectThreads, 0, stream>>>(p, scores, bh0, rows);
  } else if (p.num_k_blocks <= 32 * 8) {
    sla_select_rows_kernel<8><<<grid, kSelectThreads, 0, stream>>>(p, scores, bh0, rows);
  } else if (p.num_k_blocks <= 32 * 16) {
    sla_select_rows_kernel<16><<<grid, kSelectThreads, 0, stream>>>(p, scores, bh0, rows);
  } else if (p.num_k_blocks <= 32 * 32) {
    sla_select_rows_kernel<32><<<grid, kSelectThreads, 0, stream>>>(p, scores, bh0, rows);
  } else {
    sla_select_rows_kernel<0><<<grid, kSelectThreads, 0, stream>>>(p, scores, bh0, rows);
  }
  SLA_CUDA_CHECK_LAUNCH();
}

void run_lut_transpose(const SlaParams& p, int32_t* kv_count, int32_t* kv_list, cudaStream_t stream) {
  const int64_t bh = int64_t(p.batch) * p.heads;
  const int words = lut_transpose_words(p.num_q_blocks, p.num_k_blocks);
  if (words > 0) {
    const int chunks = (p.num_k_blocks + 32 * words - 1) / (32 * words);
    const int smem = words * p.num_q_blocks * 4;
    sla_lut_transpose_bitmask_kernel<<<dim3(unsigned(bh), unsigned(chunks)), kTransposeThreads, smem, stream>>>(
        p, kv_count, kv_list, words);
  } else {
    const int64_t threads = bh * p.num_k_blocks;
    sla_lut_transpose_kernel<<<unsigned((threads + 127) / 128), 128, 0, stream>>>(p, kv_count, kv_list);
  }
  SLA_CUDA_CHECK_LAUNCH();
}

bool hopper_kernels_enabled() {
#ifdef SLA_HAVE_SM90A
  static const bool forced_mma = [] {
    const char* env = std::getenv("SLA_KERNELS");
    return env != nullptr && std::strcmp(env, "mma") == 0;
  }();
  // Compute capability (10 major + minor), asked once per device.
  static PerDevice capability;
  const int cc = capability.get([](int device) {
    int major = 0, minor = 0;
    SLA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    SLA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return 10 * major + minor;
  });
  return !forced_mma && cc == 90;
#else
  return false;
#endif
}

bool use_sm90_kernels(const SlaParams& p) {
  return hopper_kernels_enabled() && p.blkk == 64 && (p.blkq == 64 || p.blkq == 128);
}

int multiprocessor_count() {
  static PerDevice sms;
  return sms.get([](int device) {
    int count = 0;
    SLA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  });
}

bool sm90_dkdv_pays(const SlaParams& p) {
  return p.blkq == 64 || (p.head_dim == 128 && warp_specialised_enabled()) ||
         int64_t(p.num_q_blocks) * p.blocks_per_row >= 12 * int64_t(p.num_k_blocks);
}

bool dkdv_fuses_linear(const SlaParams& p) {
  static const bool off = [] {
    const char* env = std::getenv("SLA_FUSED_KEY_SIDE");
    return env != nullptr && std::strcmp(env, "0") == 0;
  }();
  return !off && use_sm90_kernels(p) && sm90_dkdv_pays(p);
}

void run_sla_fwd(const SlaParams& p, cudaStream_t stream) {
#ifdef SLA_HAVE_SM90A
  if (use_sm90_kernels(p)) {
    run_sla_fwd_sm90(p, stream);
    return;
  }
#endif
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      SLA_BLOCK_SWITCH(p.blkq, kBQ, [&] {
        SLA_BLOCK_SWITCH(p.blkk, kBK, [&] { run_sla_fwd_<Elem, kD, kBQ, kBK>(p, stream); });
      });
    });
  });
}

void run_sla_bwd(const SlaParams& p, BwdStage stage, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      SLA_BLOCK_SWITCH(p.blkq, kBQ, [&] {
        SLA_BLOCK_SWITCH(p.blkk, kBK, [&] { run_sla_bwd_<Elem, kD, kBQ, kBK>(p, stage, stream); });
      });
    });
  });
}

}  // namespace sla::kernels
