// sla-ckpt pull REPO_ID [--revision R] [--local-dir DIR] [--include GLOB] [--repo-type model|dataset] [--json]
// Downloads into the Hugging Face cache (shared with the Python client) or a local folder, every
// file checked against the Hub's sha256 / git sha1 before it lands, then verifies the result: an
// SLA model that arrives without a valid sla_attention.pt is an error (only the files of this pull
// are judged). Prints the snapshot path. An --include that matches no file is exit 2.
// Everything the server sends is checked before use (src/hub/untrusted.h): a hostile Hub cannot
// make it write outside the cache or --local-dir, skip a hash check, or take the token elsewhere.
// Exit 0: pulled and verified; 1: the Hub failed or verify failed; 2: bad arguments, or the server
// sent a value that cannot be used (an ETag, commit id, file name or redirect; E_HUB_UNSAFE).
#include "cli.h"

#include "sla/hub/cache_layout.h"
#include "sla/hub/download.h"
#include "sla/checkpoint/errors.h"
#include "sla/hub/hub_client.h"
#include "printable.h"
#include "progress_bar.h"
#include "sla/hub/untrusted.h"
#include "sla/checkpoint/verify.h"

#include <fmt/core.h>

#include <filesystem>
#include <random>

namespace fs = std::filesystem;

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout
namespace {

struct PullArgs {
  std::string repo_id, revision = "main", local_dir, repo_type = "model";
  std::vector<std::string> include;
  bool json = false;
};

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
}

// Verifies exactly the files of this pull, not whatever else the snapshot folder holds (another
// client may have put files there): a temporary view (snapshots/<commit>/ of links to the pulled
// files) is verified, and the report names the real folder.
VerifyReport verify_pulled(const sla::hub::SnapshotResult& result) {
  std::random_device random;
  const fs::path base = fs::temp_directory_path() / fmt::format("sla-ckpt-pull-{:08x}{:08x}", random(), random());
  const fs::path view = base / "snapshots" / (result.commit.empty() ? std::string("view") : result.commit);
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{base};
  fs::create_directories(view);
  for (const auto& f : result.files) {
    const fs::path link = view / f.path;
    fs::create_directories(link.parent_path());
    fs::create_symlink(fs::absolute(fs::path(result.path) / f.path), link);
  }
  VerifyReport report = verify_path(view.string(), VerifyOptions{});
  const std::string from = view.string(), to = result.path;
  replace_all(report.path, from, to);
  for (auto& c : report.checks) {
    replace_all(c.where, from, to);
    replace_all(c.message, from, to);
  }
  return report;
}

Exit run_pull(const PullArgs& args) {
  sla::hub::check_repo_id(args.repo_id);  // std::invalid_argument: bad arguments
  const sla::hub::RepoRef repo{args.repo_id, sla::hub::parse_repo_type(args.repo_type)};
  const auto env = sla::hub::process_environment();
  auto transport = sla::hub::make_curl_transport();
  sla::hub::HubClient client(sla::hub::HubConfig::from_environment(env, SLA_TOOLKIT_VERSION), *transport);

  sla::hub::SnapshotOptions options;
  options.revision = args.revision;
  options.cache_dir = sla::hub::hub_cache_dir(env);
  if (!args.local_dir.empty()) options.local_dir = args.local_dir;
  options.include = args.include;
  sla::hub::SnapshotResult result;
  {
    ProgressBar bar("pull " + repo.id);
    options.on_total = [&](uint64_t total) { bar.set_total(total); };
    options.progress = [&](uint64_t bytes) { bar.add(bytes); };
    result = sla::hub::snapshot_download(client, repo, options);  // HubError: exit 2 when the input cannot be used (is_unusable_input), else 1
    bar.finish();
  }

  if (result.files.empty() && !args.include.empty()) {
    std::string globs;
    for (const auto& g : args.include) globs += (globs.empty() ? "" : ", ") + g;
    throw CliError(kUnusable, "no file of " + repo.id + "@" + args.revision + " matches --include " + globs);
  }
  VerifyReport report;
  try {
    report = verify_pulled(result);
  } catch (const CheckpointError& e) {  // the download is there but unreadable: a failed check, not bad input
    throw CliError(kFailed, "verify: " + std::string(e.what()));
  }
  uint64_t fetched_bytes = 0;
  size_t fetched = 0;
  for (const auto& f : result.files)
    if (f.downloaded) ++fetched, fetched_bytes += f.size;

  if (args.json) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : result.files) files.push_back({{"path", f.path}, {"size", f.size}, {"etag", f.etag}, {"downloaded", f.downloaded}});
    fmt::print("{}\n", json_text(nlohmann::json{{"repo", repo.id}, {"revision", args.revision}, {"commit", result.commit}, {"path", result.path},
                                      {"files", files}, {"downloaded_files", fetched}, {"downloaded_bytes", fetched_bytes},
                                      {"reused_files", result.files.size() - fetched}, {"verify", report.to_json()}}));
  } else {
    fmt::print(stderr, "sla-ckpt pull: {} files ({} downloaded, {} reused) at commit {}\n", result.files.size(), fetched,
               result.files.size() - fetched, result.commit);
    fmt::print("{}\n", result.path);
  }
  if (report.has_failure()) {
    for (const auto& c : report.checks)
      if (c.status == CheckStatus::kFail)
        fmt::print(stderr, "sla-ckpt pull: verify failed: {}: {} [{}]\n", c.id, c.message, c.where);
    return kFailed;
  }
  return kOk;
}

}  // namespace

Subcommand register_pull(CLI::App& parent) {
  auto args = std::make_shared<PullArgs>();
  CLI::App* app = parent.add_subcommand("pull", "Download a model from the Hub (checked, shared cache) and verify its SLA file");
  app->add_option("repo_id", args->repo_id, "namespace/name on the Hub (HF_ENDPOINT, HF_TOKEN)")->required();
  app->add_option("--revision", args->revision, "Branch, tag, commit or refs/pr/N")->capture_default_str();
  app->add_option("--local-dir", args->local_dir, "Download into this folder instead of the cache");
  app->add_option("--include", args->include, "Only files matching this glob (repeatable)");
  app->add_option("--repo-type", args->repo_type, "model or dataset")->capture_default_str();
  app->add_flag("--json", args->json, "Print a JSON summary (files, downloaded/reused, verify report) on stdout");
  app->footer("Example: HF_ENDPOINT=http://127.0.0.1:8080 sla-ckpt pull alice/my-lora --local-dir ./my-lora");
  return {app, [args] { return run_pull(*args); }};
}

}  // namespace sla::cli
