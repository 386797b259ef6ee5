#include "dit_regenerate.h"

#include "dit.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/regenerate_plan.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/one_step.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace sla_dit {

namespace fs = std::filesystem;
using nlohmann::json;
using sla::checkpoint::CheckpointError;

void regenerate_checkpoint(const RegenerateOptions& opts) {
  const std::string& dir = opts.checkpoint_dir;
  // The settings as `sla-ckpt regenerate` would find them; the entries are those of the SLA
  // modules the model's forward creates.
  const std::string output = (fs::path(dir) / sla::checkpoint::kSlaFileName).string();
  if (!opts.force && sla::checkpoint::valid_sla_file_at(output))
    throw std::invalid_argument(output + " exists and is valid; pass --force to replace it");
  const sla::checkpoint::FoundSettings found = sla::checkpoint::find_regenerate_settings(dir, opts.sla_config);
  json settings = sla::checkpoint::settings_to_json(found.settings);
  settings[sla::checkpoint::kSettingVariant] = found.variant;

  if (opts.device == "cuda" && !at::hasCUDA()) throw std::invalid_argument("--device cuda but no CUDA device is available");
  const at::Device device =
      (opts.device == "auto" && at::hasCUDA()) || opts.device.rfind("cuda", 0) == 0 ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  TrainOptions options = Trainer::options_from_checkpoint(dir);
  options.attention_mechanism = "sla";
  options.sla_config = settings.dump();
  options.device = device.str();
  std::ifstream state_in(fs::path(dir) / "training_state.json");
  const int64_t step = json::parse(state_in).at("step").get<int64_t>();

  Trainer trainer(options);
  trainer.load_weights(dir);
  trainer.freeze_all_but_sla();
  trainer.model()->train();
  // The first forward creates the SLA modules (proj_l zero), the parameters of this step.
  trainer.loss_on_batch(step + 1);
  std::vector<at::Tensor> params;
  for (const auto& module : trainer.backend().modules())
    for (const auto& p : module->proj_l->parameters()) params.push_back(p);
  if (params.empty()) throw CheckpointError("E_REGENERATE", "the model ran no attention through SLA (all calls fell back)", dir);
  const sla::OneStep r = sla::descend_once(params, [&] { return trainer.loss_on_batch(step + 1); }, dir);
  std::fprintf(stderr, "example-dit: flow-matching loss on the batch of step %lld before %.6g, after %.6g "
               "(one SGD step on proj_l only, lr %.4g, %s)\n",
               static_cast<long long>(step + 1), r.loss_before, r.loss_after, r.learning_rate, device.str().c_str());

  // The backend lays out the entries as training writes them; written to a scratch folder, then
  // marked as regenerated and written atomically beside the checkpoint's other files.
  const fs::path scratch = fs::temp_directory_path() / ("sla-dit-regenerate-" + std::to_string(::getpid()));
  sla::checkpoint::SlaFile file;
  try {
    trainer.backend().on_save_checkpoint(scratch.string());
    file = sla::checkpoint::load_sla_file((scratch / sla::checkpoint::kSlaFileName).string()).file;
  } catch (...) {
    fs::remove_all(scratch);
    throw;
  }
  fs::remove_all(scratch);
  const std::string from = "example-dit checkpoint " + dir;
  file.extension["regenerated"] = true;
  file.extension["regenerated_from"] = from;
  file.extension["regenerated_device"] = device.is_cuda() ? "cuda" : "cpu";
  file.extension["writer"] = "sla-dit-example --regenerate";
  file.has_extension = true;
  sla::checkpoint::write_sla_file(output, file);
  std::printf("%s\n", json{{"output", output}, {"device", device.str()}, {"regenerated_from", from},
                           {"mode", "example-dit"}, {"entries", file.entries.size()}, {"step_batch", step + 1},
                           {"loss_before", r.loss_before}, {"loss_after", r.loss_after},
                           {"learning_rate", r.learning_rate}}.dump(2).c_str());
}

}  // namespace sla_dit
