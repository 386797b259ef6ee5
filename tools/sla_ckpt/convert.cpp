// sla-ckpt convert IN OUT [--force] [--json]
// sla_attention.pt <-> sla_attention.safetensors, bit-exact both ways: the same tensors, settings,
// version and extension key. The direction follows the extensions. IN is only read; OUT is written
// atomically and an existing OUT is replaced only with --force.
#include "cli.h"
#include "printable.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/checkpoint/sla_state.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout
namespace {

struct ConvertArgs {
  std::string in;
  std::string out;
  bool force = false;
  bool json = false;
};

bool is_twin_path(const std::string& path) { return std::filesystem::path(path).extension() == ".safetensors"; }
bool is_pt_path(const std::string& path) { return std::filesystem::path(path).extension() == ".pt"; }

SlaLoadResult load_input(const std::string& path) {
  if (!is_twin_path(path)) return load_sla_file(path);
  SlaLoadResult result;
  result.file = safetensors::from_sla_twin(safetensors::read_file(path), path, &result.problems);
  for (Problem& p : check_sla_file(result.file)) result.problems.push_back(std::move(p));
  return result;
}

Exit run_convert(const ConvertArgs& args) {
  if (!(is_pt_path(args.in) && is_twin_path(args.out)) && !(is_twin_path(args.in) && is_pt_path(args.out))) {
    throw CliError(kUnusable, fmt::format("IN and OUT must be one .pt and one .safetensors, got {} and {}", args.in, args.out));
  }
  std::error_code ec;
  if (std::filesystem::exists(args.out, ec) && !args.force) {
    throw CliError(kUnusable, fmt::format("{} exists; pass --force to replace it", args.out));
  }
  SlaLoadResult input = load_input(args.in);  // CheckpointError: unreadable (exit 2)
  const auto first_error =
      std::find_if(input.problems.begin(), input.problems.end(), [](const Problem& p) { return !is_warning(p); });
  if (first_error != input.problems.end()) {  // one line: the first problem, and how many more verify lists
    const Problem& p = *first_error;
    const size_t more = input.problems.size() - 1;
    say(stderr, fmt::format("sla-ckpt convert: refusing to convert {}: {}: {}{}{}", args.in, p.code, p.message,
                            p.where.empty() ? "" : " at " + p.where,
                            more == 0 ? "" : fmt::format(" ({} more problem{}: sla-ckpt verify {})", more, more == 1 ? "" : "s", args.in)));
    return kFailed;
  }
  // A forward-compatibility warning does not stop the conversion: OUT holds what this toolkit reads
  // (format version 1, known settings and tensors), and each warning says what was not carried.
  for (const auto& p : input.problems)
    say(stderr, fmt::format("sla-ckpt convert: {}: {} in {}{} (written to OUT as read: version 1, only what this toolkit knows)",
                            p.code, p.message, args.in, p.where.empty() ? "" : ": " + p.where));
  nlohmann::json warnings = nlohmann::json::array();
  for (const auto& p : input.problems) warnings.push_back({{"code", p.code}, {"message", p.message}, {"where", p.where}});
  input.file.version = kSlaFormatVersion;
  if (is_twin_path(args.out))  // CheckpointError: cannot be written (exit 2)
    safetensors::write_file(args.out, safetensors::to_sla_twin(input.file));
  else
    write_sla_file(args.out, input.file);

  nlohmann::json keys = nlohmann::json::array();
  for (const auto& e : input.file.entries) keys.push_back(e.key);
  if (args.json) {
    fmt::print("{}\n", json_text(nlohmann::json{{"in", args.in},
                                      {"out", args.out},
                                      {"format", is_twin_path(args.out) ? "safetensors" : "pt"},
                                      {"entries", keys},
                                      {"version", input.file.version},
                                      {"has_extension", input.file.has_extension},
                                      {"warnings", warnings}}));
  } else {
    say(stdout, fmt::format("converted {} -> {} ({} state entries: {})", args.in, args.out, input.file.entries.size(),
                            keys.dump()));
  }
  return kOk;
}

}  // namespace

Subcommand register_convert(CLI::App& parent) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* app = parent.add_subcommand("convert", "Convert sla_attention.pt <-> sla_attention.safetensors exactly");
  app->add_option("in", args->in, "sla_attention.pt or sla_attention.safetensors to read")->required()->check(CLI::ExistingFile);
  app->add_option("out", args->out, "the file to write, of the other format")->required();
  app->add_flag("--force", args->force, "Replace OUT when it exists");
  app->add_flag("--json", args->json, "Print a JSON summary");
  app->footer("Example: sla-ckpt convert checkpoint-500/sla_attention.pt checkpoint-500/sla_attention.safetensors");
  return {app, [args] { return run_convert(*args); }};
}

}  // namespace sla::cli
