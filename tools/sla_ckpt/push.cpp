// sla-ckpt push DIR REPO_ID [--revision R] [--create-pr] [--private] [--include-checkpoints] [--include GLOB] [--exclude GLOB]
//                           [--message M] [--sla-from PATH] [--dry-run] [--repo-type model|dataset] [--json]
// Verifies the folder first: an SLA model is pushed only with a valid sla_attention.pt (the
// folder's own, the newest checkpoint's beside a training output, or --sla-from). The model card
// gets (or has replaced) its SLA section; the local folder is never modified. One commit.
// Exit 0: pushed (or dry run listed); 1: refused or the Hub failed; 2: bad arguments or input.
#include "cli.h"

#include "sla/hub/cache_layout.h"
#include "sla/hub/download.h"
#include "sla/checkpoint/errors.h"
#include "sla/hub/hub_client.h"
#include "sla/hub/model_card.h"
#include "printable.h"
#include "progress_bar.h"
#include "sla/hub/sla_source.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/hub/upload.h"
#include "sla/checkpoint/verify.h"

#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout
namespace {

struct PushArgs {
  std::string folder, repo_id, revision = "main", message, sla_from, repo_type = "model";
  std::vector<std::string> include, exclude;
  bool create_pr = false, private_repo = false, dry_run = false, json = false, include_checkpoints = false;
};

// The push is refused with this message (exit 1).
struct Refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the verify step decided: the SLA file to upload (when the model uses SLA) and its content.
struct SlaDecision {
  bool sla_model = false;
  std::optional<sla::hub::SlaSource> source;
  SlaFile file;
};

std::string failures_of(const VerifyReport& report, const std::string& skip_id = {}) {
  std::string out;
  for (const auto& c : report.checks)
    if (c.status == CheckStatus::kFail && c.id != skip_id) out += "\n  " + c.id + ": " + c.message + " [" + c.where + "]";
  return out;
}

// The verify step: the folder must be a sound SLA model, or not an SLA model at all.
SlaDecision verify_before_push(const PushArgs& args) {
  SlaDecision decision;
  const VerifyReport folder_report = verify_path(args.folder, VerifyOptions{});
  decision.source = sla::hub::find_sla_source(args.folder, args.sla_from);
  decision.sla_model = folder_report.sla_expected || decision.source.has_value();
  if (!decision.sla_model) return decision;
  if (!decision.source)
    throw Refusal("refusing to push " + args.folder + ": it is an SLA model but has no sla_attention.pt" +
                  failures_of(folder_report) +
                  "\n  fix: put the trained sla_attention.pt in the folder, or pass --sla-from PATH");
  if (decision.source->external) {
    VerifyOptions expect_sla;
    expect_sla.expect_sla = true;
    const VerifyReport file_report = verify_path(decision.source->path, expect_sla);
    if (file_report.has_failure())
      throw Refusal("refusing to push: " + decision.source->path + " (" + decision.source->reason + ") is not a valid SLA file" +
                    failures_of(file_report));
    // The folder lacking its own file is what the external one fixes.
    const std::string rest = failures_of(folder_report, "file");
    if (!rest.empty()) throw Refusal("refusing to push " + args.folder + ":" + rest);
    fmt::print(stderr, "sla-ckpt push: {} lacks sla_attention.pt; uploading {} ({}) as sla_attention.pt\n", args.folder,
               decision.source->path, decision.source->reason);
  } else if (folder_report.has_failure()) {
    throw Refusal("refusing to push " + args.folder + ": verify failed" + failures_of(folder_report));
  }
  decision.file = read_sla_file(decision.source->path);
  return decision;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A training run's intermediate checkpoint folder (checkpoint-<step>/ at the top of the folder):
// the full training state, optimizer included, so gigabytes the model does not need.
bool is_training_checkpoint(const fs::path& rel) {
  const std::string name = rel.generic_string();
  return name.rfind("checkpoint-", 0) == 0 && name.find('/') == std::string::npos;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return printable(out);  // names of the user's files, escaped for the terminal like a file's strings
}

// Files of the folder as the Hub will see them; .git and .cache/huggingface are never uploaded,
// checkpoint-*/ folders only with --include-checkpoints (a note on stderr says what was left out).
std::vector<sla::hub::UploadItem> collect_files(const PushArgs& args) {
  std::vector<sla::hub::UploadItem> items;
  std::vector<std::string> left_out, not_files;
  const fs::path root(args.folder);
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), root).generic_string();
    if (it->is_directory() && (rel == ".git" || rel == ".cache/huggingface" || rel == ".cache")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory() && !args.include_checkpoints && is_training_checkpoint(rel)) {
      left_out.push_back(rel + "/");
      it.disable_recursion_pending();
      continue;
    }
    const bool real_folder = it->is_directory() && !it->is_symlink();
    if (real_folder) continue;
    if (!args.include.empty() && !sla::hub::matches_any_glob(rel, args.include)) continue;
    if (sla::hub::matches_any_glob(rel, args.exclude)) continue;
    if (!it->is_regular_file()) {  // a dangling link, a linked folder (not walked), a FIFO, a device
      not_files.push_back(rel);
      continue;
    }
    items.push_back({rel, it->path().string(), std::nullopt});
  }
  if (!not_files.empty()) {
    std::sort(not_files.begin(), not_files.end());
    fmt::print(stderr, "sla-ckpt push: left out {} entr{} that {} not a regular file ({})\n", not_files.size(),
               not_files.size() == 1 ? "y" : "ies", not_files.size() == 1 ? "is" : "are", join_names(not_files));
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.path_in_repo < b.path_in_repo; });
  if (!left_out.empty()) {
    std::sort(left_out.begin(), left_out.end());
    fmt::print(stderr, "sla-ckpt push: left out {} training checkpoint folder(s) ({}); pass --include-checkpoints to upload them\n",
               left_out.size(), join_names(left_out));
  }
  return items;
}

void put_item(std::vector<sla::hub::UploadItem>& items, sla::hub::UploadItem item) {
  for (auto& existing : items)
    if (existing.path_in_repo == item.path_in_repo) {
      existing = std::move(item);
      return;
    }
  items.push_back(std::move(item));
}

void print_plan(const std::vector<sla::hub::PlannedFile>& plan, const std::string& note) {
  for (const auto& f : plan)
    fmt::print("{:<8} {:>14}  {}{}\n", f.mode, f.size, f.path_in_repo, f.unchanged ? "  (unchanged, skipped)" : f.ignored ? "  (ignored)" : "");
  if (!note.empty()) fmt::print("{}\n", note);
}

nlohmann::json plan_json(const std::vector<sla::hub::PlannedFile>& plan) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : plan)
    files.push_back({{"path", f.path_in_repo}, {"size", f.size}, {"mode", f.mode}, {"unchanged", f.unchanged}, {"ignored", f.ignored}});
  return files;
}

// Step 1: the arguments name a folder and a well-formed repo (std::invalid_argument otherwise).
sla::hub::RepoRef check_arguments(const PushArgs& args) {
  if (!fs::is_directory(args.folder)) throw CliError(kUnusable, args.folder + " is not a folder");
  sla::hub::check_repo_id(args.repo_id);
  return {args.repo_id, sla::hub::parse_repo_type(args.repo_type)};
}

// Step 2: verify; a folder that cannot be pushed, or cannot be read, is a refusal (exit 1).
SlaDecision verify_or_refuse(const PushArgs& args) {
  try {
    return verify_before_push(args);
  } catch (const Refusal& e) {
    throw CliError(kFailed, e.what(), CliError::Text::kLines);
  } catch (const CheckpointError& e) {
    throw CliError(kFailed, e.what());
  }
}

// The repo's README.md at the revision, or "" when the repo, revision or file does not exist yet.
// For a dry run, any failure reads as "".
std::string remote_card(sla::hub::HubClient& client, const sla::hub::RepoRef& repo, const PushArgs& args) {
  sla::hub::HttpRequest request;
  request.url = client.resolve_url(repo, args.revision, "README.md");
  request.headers = client.hub_headers();
  request.follow_redirects = true;
  request.max_body_bytes = uint64_t{8} << 20;
  try {
    return client.send(request, true).body;
  } catch (const sla::hub::HubError& e) {
    const bool absent = e.status() == 404;
    if (absent || args.dry_run) return {};
    throw CliError(sla::hub::is_unusable_input(e) ? kUnusable : kFailed, "reading the repo's model card: " + std::string(e.what()));
  }
}

// Step 3: what goes up: the folder's files, and for an SLA model its file and the card's section
// (on the folder's README.md, else on the one the repo already has, whose text is kept).
std::vector<sla::hub::UploadItem> items_to_upload(sla::hub::HubClient& client, const sla::hub::RepoRef& repo, const PushArgs& args,
                                                const SlaDecision& sla) {
  std::vector<sla::hub::UploadItem> items = collect_files(args);
  if (sla.sla_model) {
    if (sla.source->external) put_item(items, {kSlaFileName, sla.source->path, std::nullopt});
    const std::string card_path = (fs::path(args.folder) / "README.md").string();
    const std::string card = fs::is_regular_file(card_path) ? read_text(card_path) : remote_card(client, repo, args);
    put_item(items, {"README.md", {}, sla::hub::with_sla_section(card, sla.file)});
  }
  if (items.empty()) throw CliError(kFailed, "nothing to upload in " + args.folder);
  return items;
}

sla::hub::CommitOptions commit_options(const PushArgs& args) {
  sla::hub::CommitOptions options;
  options.revision = args.revision;
  options.create_pr = args.create_pr;
  options.private_repo = args.private_repo;
  options.create_repo = !args.dry_run;
  options.create_branch = !args.dry_run;
  if (!args.message.empty()) options.message = args.message;
  return options;
}

// --dry-run: how each file would go up; without a server, the modes are unknown.
Exit print_dry_run(sla::hub::HubClient& client, const sla::hub::RepoRef& repo, const std::vector<sla::hub::UploadItem>& items,
                   const sla::hub::CommitOptions& options, const PushArgs& args, const SlaDecision& sla) {
  std::vector<sla::hub::PlannedFile> plan;
  std::string note;
  try {
    plan = sla::hub::plan_upload(client, repo, items, options);
  } catch (const sla::hub::HubError& e) {
    note = "upload modes unknown: the server could not be asked (" + std::string(e.what()) + ")";
    for (const auto& item : items)
      plan.push_back({item.path_in_repo, item.content ? item.content->size() : fs::file_size(item.local_path), "unknown"});
  }
  if (args.json)
    fmt::print("{}\n", json_text(nlohmann::json{{"dry_run", true}, {"repo", repo.id}, {"revision", args.revision}, {"files", plan_json(plan)},
                                      {"sla_file", sla.source ? sla.source->path : ""}, {"note", note}}));
  else
    print_plan(plan, note);
  return kOk;
}

// Step 4: the commit, with a progress bar over the LFS bytes; a Hub failure is exit 1, or 2 when the
// input cannot be used (sla::hub::is_unusable_input).
sla::hub::CommitResult commit(sla::hub::HubClient& client, const sla::hub::RepoRef& repo,
                            const std::vector<sla::hub::UploadItem>& items, sla::hub::CommitOptions options) {
  std::optional<ProgressBar> hashing(std::in_place, "hash " + repo.id);  // the sha256 of each LFS file, first
  ProgressBar bar("push " + repo.id);
  options.on_hash_total = [&](uint64_t total) { hashing->set_total(total); };
  options.hash_progress = [&](uint64_t bytes) { hashing->add(bytes); };
  options.on_lfs_total = [&](uint64_t total) {
    hashing->finish();
    hashing.reset();
    bar.set_total(total);
  };
  options.progress = [&](uint64_t bytes) { bar.add(bytes); };
  try {
    sla::hub::CommitResult result = sla::hub::upload_commit(client, repo, items, options);
    if (hashing) hashing->finish();
    bar.finish();
    return result;
  } catch (const sla::hub::HubError& e) {
    throw CliError(sla::hub::is_unusable_input(e) ? kUnusable : kFailed, e.what());
  }
}

void print_result(const sla::hub::CommitResult& result, const sla::hub::RepoRef& repo, const PushArgs& args,
                  const SlaDecision& sla) {
  if (result.branch_created) fmt::print(stderr, "sla-ckpt push: created branch {} of {} from its default branch\n", args.revision, repo.id);
  if (args.json) {
    fmt::print("{}\n", json_text(nlohmann::json{{"repo", repo.id}, {"revision", result.revision}, {"commit", result.commit_oid},
                                      {"commit_url", result.commit_url}, {"pull_request_url", result.pull_request_url},
                                      {"no_op", result.no_op}, {"branch_created", result.branch_created},
                                      {"pull_request_opened", !result.pull_request_url.empty()}, {"files", plan_json(result.files)},
                                      {"sla_file", sla.source ? sla.source->path : ""}}));
    return;
  }
  size_t lfs = 0, sent = 0;
  for (const auto& f : result.files) {
    if (f.unchanged || f.ignored) continue;
    ++sent;
    lfs += f.mode == "lfs";
  }
  if (result.no_op)
    fmt::print("nothing changed: {}@{} is already at {}{}\n", repo.id, args.revision, result.commit_oid,
               args.create_pr ? "; no pull request was opened" : "");
  else
    fmt::print("pushed {} files ({} LFS) to {}@{}: commit {}\n{}\n", sent, lfs, repo.id, result.revision, result.commit_oid,
               result.pull_request_url.empty() ? result.commit_url : result.pull_request_url);
}

Exit run_push(const PushArgs& args) {
  const sla::hub::RepoRef repo = check_arguments(args);
  const SlaDecision sla = verify_or_refuse(args);
  auto transport = sla::hub::make_curl_transport();
  sla::hub::HubClient client(sla::hub::HubConfig::from_environment(sla::hub::process_environment(), SLA_TOOLKIT_VERSION), *transport);
  const std::vector<sla::hub::UploadItem> items = items_to_upload(client, repo, args, sla);
  const sla::hub::CommitOptions options = commit_options(args);
  if (args.dry_run) return print_dry_run(client, repo, items, options, args, sla);
  print_result(commit(client, repo, items, options), repo, args, sla);
  return kOk;
}

}  // namespace

Subcommand register_push(CLI::App& parent) {
  auto args = std::make_shared<PushArgs>();
  CLI::App* app = parent.add_subcommand("push", "Upload a model folder to the Hub in one commit, sla_attention.pt guaranteed");
  app->add_option("folder", args->folder, "The folder to upload (a checkpoint, a training output, a model)")->required();
  app->add_option("repo_id", args->repo_id, "namespace/name on the Hub (HF_ENDPOINT, HF_TOKEN)")->required();
  app->add_option("--revision", args->revision, "Branch to commit to (created from the default branch when it does not exist)")
      ->capture_default_str();
  app->add_flag("--create-pr", args->create_pr, "Open a pull request instead of committing to the branch");
  app->add_flag("--private", args->private_repo, "Create the repo private when it does not exist");
  app->add_flag("--include-checkpoints", args->include_checkpoints,
                "Also upload the checkpoint-*/ folders (training state, optimizer included); left out by default");
  app->add_option("--include", args->include, "Only files matching this glob (repeatable)");
  app->add_option("--exclude", args->exclude, "Leave out files matching this glob (repeatable)");
  app->add_option("--message", args->message, "Commit message");
  app->add_option("--sla-from", args->sla_from, "Upload this sla_attention.pt (e.g. a checkpoint's) as the repo's")
      ->check(CLI::ExistingFile);
  app->add_flag("--dry-run", args->dry_run, "List each file and how it would be uploaded (regular or LFS); write nothing");
  app->add_option("--repo-type", args->repo_type, "model or dataset")->capture_default_str();
  app->add_flag("--json", args->json, "Print a JSON summary on stdout");
  app->footer("Example: HF_ENDPOINT=http://127.0.0.1:8080 sla-ckpt push output/my-lora alice/my-lora --json");
  return {app, [args] { return run_push(*args); }};
}

}  // namespace sla::cli
