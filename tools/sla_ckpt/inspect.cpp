// sla-ckpt inspect FILE [--json]: what an sla_attention.pt (or its .safetensors twin) holds (version, settings, variant,
// each entry's tensors with summary statistics) and every schema problem with its location.
// Exit 0 valid, 1 readable with problems, 2 unreadable or bad arguments.
#include "cli.h"
#include "printable.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/checkpoint/sla_state.h"

#include <fmt/core.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <string>

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout

namespace {

struct InspectOptions {
  std::string file;
  bool json = false;
};

bool is_regenerated(const SlaFile& file) {
  auto it = file.extension.find("regenerated");
  return it != file.extension.end() && it->is_boolean() && it->get<bool>();
}

nlohmann::ordered_json to_json(const SlaInspection& r, const std::string& path) {
  const SlaSettings& s = r.file.settings;
  using json = nlohmann::ordered_json;
  json out;
  out["path"] = path;
  out["format"] = r.format;
  out["version"] = r.has_payload_version ? json(r.file.version) : json(nullptr);
  out["settings"] = r.has_settings ? settings_to_json(s) : json(nullptr);
  out["variant"] = {{"value", r.file.variant()}, {"recorded", r.file.extension.contains("variant")}};
  out["entries"] = json::array();
  for (const EntrySummary& e : r.entries) {
    json tensors = json::array();
    for (const TensorSummary& t : e.tensors)
      tensors.push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"sum", t.sum}, {"min", t.min},
                         {"max", t.max}, {"abs_max", t.abs_max}, {"finite", t.finite}});
    out["entries"].push_back({{"key", e.key}, {"head_dim", e.head_dim}, {"dtype", e.dtype_token}, {"tensors", tensors}});
  }
  out["problems"] = json::array();
  for (const Problem& p : r.problems) out["problems"].push_back({{"code", p.code}, {"message", p.message}, {"where", p.where}});
  out["warnings"] = json::array();  // forward compatibility (W_COMPAT): the file is still valid
  for (const Problem& p : r.compat) out["warnings"].push_back({{"code", p.code}, {"message", p.message}, {"where", p.where}});
  if (r.file.has_extension) out["extension"] = r.file.extension;
  out["regenerated"] = is_regenerated(r.file);
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) { return "[" + fmt::format("{}", fmt::join(shape, ", ")) + "]"; }

// Every line goes through say(): keys, names, the writer and messages come from the file.
void print_human(const SlaInspection& r, const std::string& path) {
  const SlaSettings& s = r.file.settings;
  if (r.format == "safetensors") say(stdout, fmt::format("{}: safetensors twin", path));
  else say(stdout, fmt::format("{}: torch.save archive \"{}/\" (record version {})", path, r.prefix, r.container_version));
  say(stdout, fmt::format("version: {}", r.has_payload_version ? std::to_string(r.file.version) : std::string("missing")));
  if (r.has_settings)
    say(stdout, fmt::format("settings: topk={} feature_map={} blkq={} blkk={} tie_feature_map_qk={}", s.topk, s.feature_map,
                            s.blkq, s.blkk, s.tie_feature_map_qk ? "True" : "False"));
  else
    say(stdout, "settings: missing");
  bool recorded = r.file.extension.contains("variant");
  say(stdout, fmt::format("variant: {} ({})", r.file.variant(), recorded ? "recorded" : "assumed: the file does not record it"));
  if (auto writer = r.file.extension.find("writer"); writer != r.file.extension.end() && writer->is_string())
    say(stdout, fmt::format("writer: {}", writer->get<std::string>()));
  if (is_regenerated(r.file)) say(stdout, "note: regenerated, not trained with the model");
  say(stdout, fmt::format("entries: {}", r.entries.size()));
  for (const EntrySummary& e : r.entries) {
    say(stdout, fmt::format("  {}  head_dim={} dtype={}", e.key, e.head_dim, e.dtype_token));
    for (const TensorSummary& t : e.tensors)
      say(stdout, fmt::format("    {:<14} {:<9} {:<12} sum={:.6g} min={:.6g} max={:.6g} abs_max={:.6g} {}", t.name, t.dtype,
                              shape_text(t.shape), t.sum, t.min, t.max, t.abs_max,
                              t.finite ? "finite" : fmt::format("{} non-finite", t.nonfinite)));
  }
  for (const std::string& w : r.warnings) say(stderr, fmt::format("sla-ckpt inspect: warning: {}", w));
  for (const Problem& p : r.compat) say(stdout, fmt::format("warning: {}: {} in {}", p.code, p.message, p.where));
  if (r.problems.empty()) {
    say(stdout, "problems: none");
    return;
  }
  say(stdout, fmt::format("problems: {}", r.problems.size()));
  for (const Problem& p : r.problems) say(stdout, fmt::format("  {}: {} in {}", p.code, p.message, p.where));
}

Exit run_inspect(const InspectOptions& opts) {
  // CheckpointError: unreadable (exit 2). A .safetensors name is the twin, anything else a torch.save file.
  const bool twin = opts.file.size() >= 12 && opts.file.compare(opts.file.size() - 12, 12, ".safetensors") == 0;
  const SlaInspection result = twin ? safetensors::inspect_sla_twin(opts.file) : inspect_sla_file(opts.file);
  if (opts.json) fmt::print("{}\n", json_text(to_json(result, opts.file), -1));
  else print_human(result, opts.file);
  return result.problems.empty() ? kOk : kFailed;
}

}  // namespace

Subcommand register_inspect(CLI::App& parent) {
  auto opts = std::make_shared<InspectOptions>();
  Subcommand sub;
  sub.app = parent.add_subcommand("inspect", "Show what an sla_attention.pt or its .safetensors twin holds and every problem with its location");
  sub.app->add_option("FILE", opts->file, "the .pt file (torch.save format) or its .safetensors twin")->required();
  sub.app->add_flag("--json", opts->json, "print one JSON object instead of text");
  sub.app->footer(
      "Example: sla-ckpt inspect checkpoint-500/sla_attention.pt --json\n"
      "Exit: 0 valid, 1 readable with problems, 2 unreadable or bad arguments.");
  sub.run = [opts] { return run_inspect(*opts); };
  return sub;
}

}  // namespace sla::cli
