// The kernels' support table and its one validator (src/sla/kernels/support.h, support.cpp), on
// the CPU: can_implement's statuses, why_not's text, and the checked-in instantiations against the
// table. Built twice: with the whole table, and as test_kernel_support_subset with the masks a build
// of -DSLA_KERNEL_HDIMS=64 -DSLA_KERNEL_DTYPES=bf16 gets (SUBSET_BUILD).
#include <catch.hpp>

#include "sla/kernels/support.h"

#include <filesystem>
#include <set>
#include <string>

using sla::kernels::ElemType;
using sla::kernels::SlaParams;
using sla::kernels::Status;

namespace {

SlaParams params(int head_dim, int blkq, int blkk, ElemType elem = ElemType::kBf16) {
  SlaParams p;
  p.elem = elem;
  p.head_dim = head_dim;
  p.blkq = blkq;
  p.blkk = blkk;
  p.batch = 2;
  p.heads = 3;
  p.seqlen = 100;
  return p;
}

Status check(const SlaParams& p) { return sla::kernels::can_implement(p); }

}  // namespace

TEST_CASE("the table is the matrix the kernels were written for") {
  CHECK(std::set<int>(std::begin(sla::kernels::kHeadDims), std::end(sla::kernels::kHeadDims)) == std::set<int>{64, 128});
  CHECK(std::set<int>(std::begin(sla::kernels::kBlockSizes), std::end(sla::kernels::kBlockSizes)) ==
        std::set<int>{32, 64, 128});
  CHECK(sla::kernels::kLinearEps == 1e-5);
}

TEST_CASE("can_implement names the first thing wrong, why_not says expected and got") {
  using sla::kernels::why_not;
  CHECK(check(params(64, 64, 64)) == Status::kSuccess);
  CHECK(why_not(Status::kSuccess, params(64, 64, 64)).empty());
  CHECK(check(params(96, 64, 64)) == Status::kUnsupportedHeadDim);
  CHECK(why_not(Status::kUnsupportedHeadDim, params(96, 64, 64)) == "expected head_dim 64 or 128, got 96");
  CHECK(check(params(64, 48, 64)) == Status::kUnsupportedBlockSize);
  CHECK(why_not(Status::kUnsupportedBlockSize, params(64, 48, 64)) == "expected blkq and blkk in {32, 64, 128}, got 48");
  CHECK(why_not(Status::kUnsupportedBlockSize, params(64, 64, 16)) == "expected blkq and blkk in {32, 64, 128}, got 16");
  CHECK(check(params(64, 64, 0)) == Status::kUnsupportedBlockSize);
  SlaParams empty = params(64, 64, 64);
  empty.seqlen = 0;
  CHECK(check(empty) == Status::kEmpty);
  CHECK(why_not(Status::kEmpty, empty) == "expected non-empty inputs, got B x H x L = 2 x 3 x 0");
  SlaParams big = params(64, 64, 64);
  big.heads = 65536;
  CHECK(check(big) == Status::kTooLarge);
  big.heads = 65535;
  big.seqlen = (1 << 30) + 1;
  CHECK(check(big) == Status::kTooLarge);
  big.seqlen = 1 << 30;
  CHECK(check(big) == Status::kSuccess);
  CHECK(sla::kernels::expected_dtypes() == "expected bfloat16 or float16");
}

TEST_CASE("alignment: set pointers and row strides must be 16-byte multiples, unset ones pass") {
  alignas(16) static char buffer[256];
  SlaParams p = params(64, 64, 64);
  p.q = {buffer, 0, 0, 64};
  CHECK(check(p) == Status::kSuccess);
  p.k = {buffer + 2, 0, 0, 64};
  CHECK(check(p) == Status::kMisaligned);
  p.k = {buffer, 0, 0, 68};  // 136-byte rows of bf16
  CHECK(check(p) == Status::kMisaligned);
  p.k = {};
  p.dv = {buffer + 8, 0, 0, 64};
  CHECK(check(p) == Status::kMisaligned);
}

#ifndef SUBSET_BUILD
TEST_CASE("the whole table is built by default") {
  CHECK(check(params(128, 32, 128, ElemType::kFp16)) == Status::kSuccess);
  CHECK(sla::kernels::head_dim_built(128));
  CHECK(sla::kernels::elem_built(ElemType::kFp16));
}
#else
TEST_CASE("a build limited to head_dim 64 and bf16 refuses the rest, naming the option") {
  using sla::kernels::why_not;
  CHECK(check(params(64, 32, 128)) == Status::kSuccess);
  const SlaParams d128 = params(128, 64, 64);
  CHECK(check(d128) == Status::kHeadDimNotBuilt);
  CHECK(why_not(Status::kHeadDimNotBuilt, d128) == "expected head_dim 64 (this build's SLA_KERNEL_HDIMS), got 128");
  CHECK(check(params(96, 64, 64)) == Status::kUnsupportedHeadDim);
  const SlaParams fp16 = params(64, 64, 64, ElemType::kFp16);
  CHECK(check(fp16) == Status::kDtypeNotBuilt);
  CHECK(why_not(Status::kDtypeNotBuilt, fp16) == "expected bfloat16 (this build's SLA_KERNEL_DTYPES), got float16");
}
#endif

TEST_CASE("the checked-in instantiations are the table's matrix (generate_instantiations.py)") {
  const std::filesystem::path dir = std::filesystem::path(SLA_SOURCE_DIR) / "src/sla/kernels/instantiations";
  std::set<std::string> found, expected;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) found.insert(entry.path().filename().string());
  for (const char* pass : {"fwd", "bwd"}) {
    for (ElemType e : sla::kernels::kElemTypes) {
      for (int d : sla::kernels::kHeadDims) {
        for (int bq : sla::kernels::kBlockSizes) {
          expected.insert(std::string("sla_") + pass + "_" + (e == ElemType::kBf16 ? "bf16" : "fp16") + "_hdim" +
                          std::to_string(d) + "_bq" + std::to_string(bq) + ".cu");
        }
      }
    }
  }
  CHECK(found == expected);
}
