// Provenance across a SimpleTuner resume-and-save cycle. SimpleTuner writes only settings, state and
// version, so a checkpoint it saves after resuming from one of ours has lost our extension key (the
// variant, whether the state was regenerated). Within a training run the record is still there: the
// earlier checkpoint-<step>/sla_attention.pt that the run resumed from carries it. A file without
// the key inherits the record of the newest earlier checkpoint of the same run that has one, the same
// settings, and every one of its entries (key and shapes) in this file: SimpleTuner's save keeps
// every entry it loaded and only adds new ones. The record is lost once that checkpoint is deleted
// (SimpleTuner's --checkpoints_total_limit), or when the file leaves its run folder.
#include "verify_internal.h"

#include <cstring>

namespace sla::checkpoint::verify_detail {

namespace {

// The record's entries all appear in the file with the same shapes; `identical` says whether
// their values are bit-identical too (a plain re-save) or differ (trained further).
bool descends_from(const SlaFile& file, const SlaFile& record, bool* identical) {
  if (record.settings != file.settings || record.entries.empty()) return false;
  *identical = true;
  for (const SlaEntry& r : record.entries) {
    const SlaEntry* e = file.find(r.key);
    if (!e || e->weight.shape != r.weight.shape || e->bias.shape != r.bias.shape) return false;
    for (auto [a, b] : {std::pair{&e->weight, &r.weight}, std::pair{&e->bias, &r.bias}})
      if (a->values.size() != b->values.size() ||
          std::memcmp(a->values.data(), b->values.data(), a->values.size() * sizeof(float)) != 0)
        *identical = false;
  }
  return true;
}

}  // namespace

std::optional<LineageRecord> find_lineage_record(const fs::path& target, const SlaFile& file) {
  if (file.has_extension) return std::nullopt;
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // A checkpoint-<N> folder: the run's earlier checkpoints (steps below N). Any other folder (a
  // training output holding the final file): the checkpoints inside it.
  // Paths as the user gave them where possible ("run/checkpoint-3/.." -> "run"); "." needs the absolute name.
  fs::path named = folder.lexically_normal();
  if (named == "." || named.filename().empty()) named = fs::absolute(folder).lexically_normal();
  if (named.filename().empty()) named = named.parent_path();  // "/a/checkpoint-3/" -> "/a/checkpoint-3"
  const long long step = checkpoint_step(named);
  const fs::path run = step >= 0 ? (named.has_parent_path() ? named.parent_path() : fs::path(".")) : folder;
  for (const fs::path& candidate : checkpoint_files_under(run, step >= 0 ? folder : fs::path())) {
    if (step >= 0 && checkpoint_step(candidate.parent_path()) >= step) continue;
    SlaLoadResult loaded;
    try {
      loaded = load_sla_file(candidate.string());
    } catch (const std::exception&) {
      continue;  // an unreadable earlier file records nothing
    }
    if (!loaded.file.has_extension) continue;
    bool identical = false;
    if (descends_from(file, loaded.file, &identical)) return LineageRecord{candidate, loaded.file.extension, identical};
  }
  return std::nullopt;
}

}  // namespace sla::checkpoint::verify_detail
