// Which sla_attention.pt a push uploads. A folder's own file wins; a training output folder (a
// final LoRA or pipeline) usually lacks it, so the newest checkpoint-<step>/sla_attention.pt beside
// it is taken instead; --sla-from names one explicitly.
#pragma once

#include <optional>
#include <string>

namespace sla::hub {

struct SlaSource {
  std::string path;    // the file to upload as sla_attention.pt at the repo root
  std::string reason;  // "the folder's own" | "the newest checkpoint's (checkpoint-N)" | "--sla-from"
  bool external = false;  // not the folder's own file: uploaded in addition
};

// The newest (highest step) checkpoint-<step>/sla_attention.pt directly under folder.
std::optional<std::string> newest_checkpoint_sla_file(const std::string& folder);

// sla_from when given, else folder/sla_attention.pt, else the newest checkpoint's; nothing when none.
std::optional<SlaSource> find_sla_source(const std::string& folder, const std::string& sla_from);

}  // namespace sla::hub
