// verify_path: which file, which evidence, the checks in order, and the report. Its parts, one
// file per concern, are listed in verify_internal.h.
#include "verify_internal.h"

#include "mapped_file.h"
#include "safetensors.h"
#include "sla_state.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace sla::checkpoint {

using namespace verify_detail;

const char* to_string(CheckStatus status) {
  switch (status) {
    case CheckStatus::kOk: return "ok";
    case CheckStatus::kWarn: return "warn";
    case CheckStatus::kFail: return "fail";
  }
  return "fail";
}

bool reference_kernel_accepts(int64_t blkq, int64_t blkk) {
  // thu-ml/SLA sparse_linear_attention/kernel.py, _attention.forward:
  //   assert BLOCK_M == 64 or BLOCK_M == 128
  //   assert BLOCK_N == 64
  // (BLOCK_M = BLKQ, BLOCK_N = BLKK). SimpleTuner catches the AssertionError and runs SDPA instead.
  return (blkq == 64 || blkq == 128) && blkk == 64;
}

bool VerifyReport::has_failure() const {
  return std::any_of(checks.begin(), checks.end(), [](const Check& c) { return c.status == CheckStatus::kFail; });
}

json VerifyReport::to_json() const {
  json list = json::array();
  for (const auto& c : checks)
    list.push_back({{"id", c.id}, {"status", sla::checkpoint::to_string(c.status)}, {"message", c.message}, {"where", c.where}});
  return {{"path", path}, {"kind", kind}, {"sla_expected", sla_expected}, {"checks", list}, {"ok", ok}};
}

VerifyReport verify_path(const std::string& path_text, const VerifyOptions& options) {
  const fs::path path(path_text);
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw CheckpointError("E_IO", "no such file or folder", path_text);
  const bool path_is_file = !fs::is_directory(status);
  if (path_is_file) {
    const std::string ext = path.extension().string();
    uint64_t size = 0;
    ::close(open_regular_file(path_text, &size));  // names a FIFO, socket or device; never blocks
    if (ext != ".pt" && ext != ".safetensors")
      throw CheckpointError("E_IO", "expected an sla_attention.pt, its .safetensors twin or a folder", path_text);
  } else {
    fs::directory_iterator probe(path, ec);
    if (ec) throw CheckpointError("E_IO", "cannot list folder: " + ec.message(), path_text);
  }

  const fs::path folder = path_is_file ? (path.has_parent_path() ? path.parent_path() : fs::path(".")) : path;
  VerifyReport report;
  report.path = path_text;
  report.kind = classify(path, folder, path_is_file);
  Verifier v(report);

  // The file to verify: the one named, else the .pt of the folder, else its twin. An entry of
  // that name that is no regular file (a dangling link, a FIFO, a folder) is a broken file: read
  // and reported as such, never taken for a missing one.
  const fs::path pt_path = folder / kSlaFileName, twin_path = folder / kSlaTwinName;
  const bool pt_present = entry_exists(pt_path.string());
  fs::path target = path_is_file ? path : pt_present ? pt_path : entry_exists(twin_path.string()) ? twin_path : fs::path();

  const ModelShape model = find_model_shape(folder.string(), options.model_config);
  const Evidence evidence = gather_evidence(folder, !target.empty(), options);
  report.sla_expected = !evidence.reasons.empty();

  if (!report.sla_expected) {
    v.add("evidence", CheckStatus::kOk,
          "no SLA evidence (no sla_attention.pt, model-card line, training config or checkpoint file); "
          "nothing to verify; pass --expect-sla if this model was trained with SLA",
          folder.string());
    report.ok = true;
    return report;
  }
  v.add("evidence", CheckStatus::kOk, "SLA model: " + join(evidence.reasons, "; "), folder.string());

  if (target.empty()) {
    std::string fix = evidence.sibling_files.empty()
                          ? "run `sla-ckpt regenerate " + folder.string() + "` to rebuild it"
                          : "copy " + evidence.sibling_files.front().string() + " (the newest checkpoint's) to " +
                                pt_path.string() + ", or run `sla-ckpt regenerate " + folder.string() + "`";
    v.add("file", CheckStatus::kFail, "SLA expected but sla_attention.pt is missing: the model would run untrained; fix: " + fix,
          pt_path.string());
  } else if (!is_file(target)) {  // a dangling link, a FIFO, a folder: open's refusal says which
    std::string why;
    try {
      uint64_t size = 0;
      ::close(open_regular_file(target.string(), &size));
      why = "changed while verifying";  // a regular file by now (replaced meanwhile)
    } catch (const std::exception& e) {
      why = e.what();
    }
    v.add("file", CheckStatus::kFail, "present but not a readable file: " + why, target.string());
  } else {
    const bool only_twin = target.extension() == ".safetensors" && !pt_present;
    if (only_twin)
      v.add("file", CheckStatus::kWarn,
            "only the safetensors twin is present; SimpleTuner reads sla_attention.pt: run `sla-ckpt convert " +
                target.string() + " " + pt_path.string() + "`",
            target.string());
    else
      v.add("file", CheckStatus::kOk, "present", target.string());

    const std::string where = target.string();
    std::optional<LoadedSla> sla;
    try {
      sla = load_any(target);
      v.add("read", CheckStatus::kOk, "reads cleanly", where);
    } catch (const std::exception& e) {
      v.add("read", CheckStatus::kFail, e.what(), where);
    }
    if (sla) {
      v.check_schema(*sla, where);
      v.check_coverage(sla->file, model, where, evidence.reasons.size() > 1);
      v.check_settings(sla->file, where);
      const std::optional<LineageRecord> lineage = find_lineage_record(target, sla->file);
      v.check_variant(sla->file, options.variant, lineage, where);
      v.check_values(sla->file, where);
      v.check_provenance(sla->file, lineage, where);
      const fs::path other = target.extension() == ".safetensors" ? pt_path : twin_path;
      if (entry_exists(other.string()) && !(target.extension() == ".safetensors" && only_twin)) {
        if (target.extension() == ".safetensors") {
          try {
            v.check_twin(load_any(other).file, target);
          } catch (const std::exception& e) {
            v.add("twin", CheckStatus::kFail, std::string("sla_attention.pt cannot be read: ") + e.what(), other.string());
          }
        } else {
          v.check_twin(sla->file, other);
        }
      }
    }
  }

  const bool any_warning = std::any_of(report.checks.begin(), report.checks.end(),
                                       [](const Check& c) { return c.status == CheckStatus::kWarn; });
  report.ok = !report.has_failure() && !(options.strict && any_warning);
  return report;
}

}  // namespace sla::checkpoint
