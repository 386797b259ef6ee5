// sla-ckpt verify PATH [--expect-sla] [--model-config FILE] [--strict] [--variant V] [--json]
// Runs the checkpoint validator (src/checkpoint/verify.h) and prints one line per check, or the
// report as JSON. Exit 0: nothing failed (warnings too with --strict); 1: a check failed; 2: PATH
// cannot be read or the arguments are wrong.
#include "cli.h"
#include "printable.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/verify.h"

#include <fmt/core.h>

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout
namespace {

struct VerifyArgs {
  std::string path;
  VerifyOptions options;
  bool json = false;
};

// Every line goes through say(): messages quote the file's strings and paths may hold anything.
void print_human(const VerifyReport& report) {
  say(stdout, fmt::format("{} ({}{})", report.path, report.kind, report.sla_expected ? ", SLA expected" : ""));
  for (const auto& c : report.checks)
    say(stdout, fmt::format("{:<4}  {:<10}  {}  [{}]", to_string(c.status), c.id, c.message, c.where));
  say(stdout, report.ok ? "verify: ok" : "verify: FAILED");
}

Exit run_verify(const VerifyArgs& args) {
  const VerifyReport report = verify_path(args.path, args.options);  // CheckpointError: unreadable (exit 2)
  if (args.json)
    fmt::print("{}\n", json_text(report.to_json()));
  else
    print_human(report);
  return report.ok ? kOk : kFailed;
}

}  // namespace

Subcommand register_verify(CLI::App& parent) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* app = parent.add_subcommand("verify", "Check that an SLA model carries a sound sla_attention.pt");
  app->add_option("path", args->path,
                  "sla_attention.pt, its .safetensors twin, a checkpoint-<step>/ folder, a training output folder "
                  "or a downloaded snapshot")
      ->required();
  app->add_flag("--expect-sla", args->options.expect_sla, "The model was trained with SLA: a missing file is a failure");
  app->add_option("--model-config", args->options.model_config,
                  "config.json with attention_head_dim (or hidden_size / num_attention_heads)")
      ->check(CLI::ExistingFile);
  app->add_flag("--strict", args->options.strict, "Warnings fail too");
  app->add_option("--variant", args->options.variant,
                  "The linear-branch variant the model was trained with, for files that do not record it "
                  "(SimpleTuner's): all | complement")
      ->check(CLI::IsMember({"all", "complement"}));
  app->add_flag("--json", args->json, "Print {path, kind, sla_expected, checks: [{id, status, message, where}], ok}");
  app->footer("Example: sla-ckpt verify output/checkpoint-500 --expect-sla --json");
  return {app, [args] { return run_verify(*args); }};
}

}  // namespace sla::cli
