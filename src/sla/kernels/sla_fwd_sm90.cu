// The Hopper forwards (sla_fwd_ws_sm90_kernel.cuh, sla_fwd_sm90_kernel.cuh), compiled for sm_90a
// alone: their launchers, the tensor maps of the warp-specialised one, and the instantiations
// (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_fwd_sm90_kernel.cuh"
#include "sla_fwd_ws_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

#include <algorithm>
#include <cstdint>
#ifdef SLA_FWD_TRACE
#include <cstdio>
#include <cstdlib>
#include <vector>
#endif

namespace sla::kernels {

namespace {

#ifdef SLA_FWD_TRACE
// fwd_trace.cuh's buffer after a launch, appended to $SLA_FWD_TRACE_OUT (where set): a header of
// eight int64 (grid, tiles, steps per tile, ring entries per tile, query blocks per tile, blocks
// per LUT row, D, words per CTA), then the buffer. Synchronises the stream: measuring builds only.
void dump_fwd_trace(cudaStream_t stream, int64_t grid, int64_t tiles, int64_t steps, int64_t entries, int64_t qblocks,
                    int64_t n, int64_t d) {
  const char* path = std::getenv("SLA_FWD_TRACE_OUT");
  if (path == nullptr) return;
  std::vector<long long> words(size_t(kTraceCtas) * kTraceCtaWords);
  SLA_CUDA_CHECK(cudaStreamSynchronize(stream));
  SLA_CUDA_CHECK(cudaMemcpyFromSymbol(words.data(), g_fwd_trace, words.size() * sizeof(long long)));
  const long long header[8] = {grid, tiles, steps, entries, qblocks, n, d, kTraceCtaWords};
  if (FILE* f = std::fopen(path, "ab")) {
    std::fwrite(header, sizeof(header), 1, f);
    std::fwrite(words.data(), sizeof(long long), words.size(), f);
    std::fclose(f);
  }
}
#endif

template <class Elem, int D, int BQ>
bool launch_fwd_ws_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdWsSm90Traits<Elem, D, BQ>;
  FwdTensorMaps maps;
  if (!encode_rows_map(&maps.q, p.q, p, Tr::kRows) || !encode_rows_map(&maps.k, p.k, p, Tr::kBlockK) ||
      !encode_rows_map(&maps.v, p.v, p, Tr::kBlockK) || !encode_rows_map(&maps.o, p.o, p, 64)) {
    return false;
  }
  if (p.lin_state != nullptr) {
    if (reinterpret_cast<uintptr_t>(p.lin_z) % 16 != 0) return false;  // z travels by bulk copy
    const int64_t states = int64_t(p.batch) * p.heads * (p.lin_per_q_block ? p.num_q_blocks : 1);
    if (!encode_matrices_map(&maps.m, p.elem, p.lin_state, p.head_dim, states)) return false;
  }
  auto kernel = &sla_fwd_ws_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  // Tiles of kRows query rows per (b, h): one CTA per SM walks several (its producer loads the
  // next tile while the consumers finish the last).
  const int64_t tiles = int64_t((p.num_q_blocks + Tr::kQBlocks - 1) / Tr::kQBlocks) * p.heads * p.batch;
  const int64_t grid = std::min<int64_t>(tiles, multiprocessor_count());
#ifdef SLA_FWD_TRACE
  void* trace = nullptr;
  SLA_CUDA_CHECK(cudaGetSymbolAddress(&trace, g_fwd_trace));
  SLA_CUDA_CHECK(cudaMemsetAsync(trace, 0, sizeof(long long) * kTraceCtas * kTraceCtaWords, stream));
#endif
  kernel<<<unsigned(grid), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
  SLA_CUDA_CHECK_LAUNCH();
#ifdef SLA_FWD_TRACE
  const int steps = (p.blocks_per_row + Tr::kStepBlocks - 1) / Tr::kStepBlocks;
  dump_fwd_trace(stream, grid, tiles, steps, steps + (p.lin_state != nullptr ? 1 : 0), Tr::kQBlocks,
                 p.blocks_per_row, D);
#endif
  return true;
}

template <class Elem, int D, int BQ>
void launch_fwd_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdSm90Traits<Elem, D, BQ>;
  auto kernel = &sla_fwd_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  const dim3 grid(p.num_q_blocks, p.heads, p.batch);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void run_sla_fwd_sm90(const SlaParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      // D 64 keeps the cp.async kernels: at 64-row blocks three of their CTAs share an SM, and they
      // are ahead (H100, (1,16,16384,64) topk 0.05 64/64: forward 6.9-7.1x against 5.5-5.9x; again
      // at 1a768cd, with the warp-specialised epilogue's TMA store and z in the ring: 0.284-0.291
      // ms against 0.322-0.337, three rounds).
      if constexpr (kD == 128) {
        if (warp_specialised_enabled() && (p.blkq == 64 ? launch_fwd_ws_sm90<Elem, kD, 64>(p, stream)
                                                                : launch_fwd_ws_sm90<Elem, kD, 128>(p, stream))) {
          return;
        }
      }
      if (p.blkq == 64) {
        launch_fwd_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_fwd_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels
