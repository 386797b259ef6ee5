// sla-ckpt regenerate CHECKPOINT_DIR [--sla-config JSON] [--head-dim D]... [--dtype bf16|fp16]
//                    [--device auto|cpu|cuda] [--calibration FILE] [--force] [--dry-run] [--json]
// Rebuilds a missing sla_attention.pt with one SLA training step per entry, distilled from dense
// attention (sla/regenerate.h). The plan (settings, entries, inputs) comes from
// sla/checkpoint/regenerate_plan.h; --dry-run prints it, and a valid file is replaced only with
// --force. The step needs LibTorch, which sla-ckpt does not link (inspect and verify start
// quickly): this same file is also built into sla-ckpt-regenerate (SLA_REGENERATE_IN_PROCESS), a
// LibTorch build of this subcommand alone, and sla-ckpt hands it its own command line unchanged.
// A checkpoint of the example DiT can instead take one step of the example's own objective:
// `sla-dit-example --regenerate DIR` (examples/); regenerate says so.
#include "cli.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/regenerate_plan.h"
#include "sla/checkpoint/sla_state.h"
#include "printable.h"
#ifdef SLA_REGENERATE_IN_PROCESS
#include "sla/regenerate.h"
#endif

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sla::checkpoint::CheckpointError;

struct RegenerateArgs {
  sla::checkpoint::RegenerateRequest request;
  bool force = false;
  bool dry_run = false;
  bool json = false;
};

// A checkpoint folder written by the example DiT (examples/dit.h): its model config names SlaDiT
// and its training_state.json, written last, marks it complete.
bool is_example_dit_checkpoint(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_regular_file(folder / "training_state.json", ec)) return false;
  std::ifstream in(folder / "transformer" / "config.json");
  const json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.value("_class_name", "") == "SlaDiT";
}

#ifdef SLA_REGENERATE_IN_PROCESS
int run_plan(const sla::checkpoint::RegeneratePlan& plan, bool as_json) {
  const sla::RegenerateReport report = sla::regenerate(plan, [](sla::checkpoint::LogLevel, std::string_view line) {
    say(stderr, line);
  });
  if (as_json) {
    json entries = json::array();
    for (const auto& e : report.entries)
      entries.push_back({{"key", e.key}, {"error_before", e.error_before}, {"error_after", e.error_after},
                         {"learning_rate", e.learning_rate}});
    fmt::print("{}\n", json_text(json{{"output", report.output}, {"device", report.device},
                             {"regenerated_from", report.regenerated_from}, {"entries", entries}}));
  } else {
    fmt::print("wrote {} ({} entries, regenerated from {}, not trained with the model)\n", printable(report.output),
               report.entries.size(), printable(report.regenerated_from));
  }
  return kOk;
}
#else
// The LibTorch build of this subcommand, beside this binary or $SLA_CKPT_REGENERATE, gets this
// process's command line as it is.
int run_plan(const sla::checkpoint::RegeneratePlan&, bool) {
  const char* env = std::getenv("SLA_CKPT_REGENERATE");
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const std::string exe = env && *env ? env : (ec ? fs::path(".") : self.parent_path()).string() + "/sla-ckpt-regenerate";
  if (::access(exe.c_str(), X_OK) != 0)
    throw CliError(kUnusable, exe + " not found; it is built with LibTorch (SLA_WITH_TORCH=ON)");
  std::vector<const char*> argv = {exe.c_str()};
  const std::vector<std::string>& line = command_line();
  for (size_t i = 1; i < line.size(); ++i) argv.push_back(line[i].c_str());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execv(exe.c_str(), const_cast<char* const*>(argv.data()));
  throw CliError(kUnusable, "cannot run " + exe);
}
#endif

int run_regenerate(const RegenerateArgs& args) {
  std::error_code ec;
  if (!fs::is_directory(args.request.folder, ec)) throw CliError(kUnusable, args.request.folder + " is not a folder");
  const sla::checkpoint::RegeneratePlan plan = sla::checkpoint::make_regenerate_plan(args.request);
  json shown = to_json(plan);
  if (is_example_dit_checkpoint(args.request.folder))
    shown["note"] = "a checkpoint of the example DiT: `sla-dit-example --regenerate " + args.request.folder +
                    "` takes one step of its own objective instead";
  if (args.dry_run) {
    const std::string text = json_text(shown);
    fmt::print("{}\n", args.json ? text : "plan (dry run, nothing written):\n" + text);
    return kOk;
  }
  if (plan.existing_valid && !args.force)
    throw CliError(kUnusable, plan.output + " exists and is valid; pass --force to replace it");
  if (shown.contains("note") && !args.json) say(stderr, "sla-ckpt regenerate: note: " + shown["note"].get<std::string>());
  return run_plan(plan, args.json);
}

}  // namespace

Subcommand register_regenerate(CLI::App& parent) {
  auto args = std::make_shared<RegenerateArgs>();
  CLI::App* app = parent.add_subcommand("regenerate", "Rebuild a missing sla_attention.pt with one SLA training step");
  app->add_option("checkpoint_dir", args->request.folder, "the checkpoint or output folder to write sla_attention.pt into")
      ->required();
  app->add_option("--sla-config", args->request.sla_config, "SLA settings as JSON or a Python dict literal");
  app->add_option("--head-dim", args->request.head_dims, "attention head dim (repeatable); default: from the model config");
  app->add_option("--dtype", args->request.dtype, "query dtype of the state entries")->check(CLI::IsMember({"bf16", "fp16"}));
  app->add_option("--device", args->request.device, "where the step runs")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app->add_option("--calibration", args->request.calibration, "safetensors with q, k, v of shape (B, H, L, D)")
      ->check(CLI::ExistingFile);
  app->add_flag("--force", args->force, "Replace a valid sla_attention.pt");
  app->add_flag("--dry-run", args->dry_run, "Print the plan, write nothing");
  app->add_flag("--json", args->json, "Machine-readable output");
  app->footer("Example: sla-ckpt regenerate output/checkpoint-500 --sla-config \"{'topk': 0.2}\" --dry-run");
  return {app, [args] { return run_regenerate(*args); }};
}

}  // namespace sla::cli
