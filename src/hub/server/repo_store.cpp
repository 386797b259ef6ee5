#include "repo_store.h"

#include "sla/checkpoint/durable_file.h"

#include "file_util.h"
#include "sla/hub/common/hashing.h"
#include "sla/hub/common/hub_text.h"
#include "http_error.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>

namespace sla::hub::server {
namespace {

using nlohmann::json;

// What a new Hub repo starts with: the LFS patterns of the Hub's default .gitattributes.
const char* kDefaultGitattributes =
    "*.7z filter=lfs diff=lfs merge=lfs -text\n"
    "*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.bz2 filter=lfs diff=lfs merge=lfs -text\n"
    "*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    "*.ftz filter=lfs diff=lfs merge=lfs -text\n"
    "*.gz filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.joblib filter=lfs diff=lfs merge=lfs -text\n"
    "*.lfs.* filter=lfs diff=lfs merge=lfs -text\n"
    "*.mlmodel filter=lfs diff=lfs merge=lfs -text\n"
    "*.model filter=lfs diff=lfs merge=lfs -text\n"
    "*.msgpack filter=lfs diff=lfs merge=lfs -text\n"
    "*.npy filter=lfs diff=lfs merge=lfs -text\n"
    "*.npz filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.ot filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.pb filter=lfs diff=lfs merge=lfs -text\n"
    "*.pickle filter=lfs diff=lfs merge=lfs -text\n"
    "*.pkl filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.pth filter=lfs diff=lfs merge=lfs -text\n"
    "*.rar filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "saved_model/**/* filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar.* filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar filter=lfs diff=lfs merge=lfs -text\n"
    "*.tflite filter=lfs diff=lfs merge=lfs -text\n"
    "*.tgz filter=lfs diff=lfs merge=lfs -text\n"
    "*.wasm filter=lfs diff=lfs merge=lfs -text\n"
    "*.xz filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
    "*.zst filter=lfs diff=lfs merge=lfs -text\n"
    "*tfevents* filter=lfs diff=lfs merge=lfs -text\n";


bool is_commit_id(const std::string& s) { return s.size() == 40 && is_lower_hex(s); }

// Branch names: segments of [A-Za-z0-9._-], none empty or starting with '.', no "..".
bool is_branch_name(const std::string& name) {
  static const std::regex segment(R"([A-Za-z0-9_-][A-Za-z0-9._-]*)");
  if (name.empty() || name.size() > 255 || name.find("..") != std::string::npos) return false;
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    std::string part = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!std::regex_match(part, segment)) return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json commit_record(const Commit& c) {
  json tree = json::object();
  for (const auto& [path, e] : c.tree) {
    tree[path] = {{"sha256", e.sha256}, {"git_sha1", e.git_sha1}, {"size", e.size}, {"lfs", e.lfs}};
  }
  return {{"parents", c.parents},
          {"summary", c.summary},
          {"description", c.description},
          {"created", c.created_ns},
          {"tree", tree}};
}

Commit parse_commit_record(const std::string& id, const std::string& text) {
  json j = json::parse(text);
  Commit c;
  c.id = id;
  c.parents = j.at("parents").get<std::vector<std::string>>();
  c.summary = j.at("summary").get<std::string>();
  c.description = j.at("description").get<std::string>();
  c.created_ns = j.at("created").get<int64_t>();
  for (const auto& [path, e] : j.at("tree").items()) {
    c.tree[path] = FileEntry{e.at("sha256").get<std::string>(), e.at("git_sha1").get<std::string>(),
                             e.at("size").get<uint64_t>(), e.at("lfs").get<bool>()};
  }
  return c;
}

// A file may not also be a folder of another file ("a" and "a/b").
void check_no_file_folder_clash(const Tree& tree) {
  for (const auto& [path, entry] : tree) {
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
      if (tree.count(path.substr(0, slash))) {
        throw bad_request("path " + path + " is inside " + path.substr(0, slash) + ", which is a file");
      }
    }
  }
}

void apply_operation(Tree& tree, const CommitOperation& op) {
  switch (op.kind) {
    case CommitOperation::kAdd:
      tree[op.path] = op.entry;
      return;
    case CommitOperation::kDeleteFile:
      if (!tree.erase(op.path)) {
        throw HttpError(404, "EntryNotFound", "A file with this name doesn't exist: " + op.path);
      }
      return;
    case CommitOperation::kDeleteFolder: {
      std::string prefix = op.path;
      while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
      prefix += '/';
      size_t removed = 0;
      for (auto it = tree.lower_bound(prefix); it != tree.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
        it = tree.erase(it);
        ++removed;
      }
      if (removed == 0) throw HttpError(404, "EntryNotFound", "A folder with this name doesn't exist: " + op.path);
      return;
    }
  }
}

// Leftovers of writes that were killed midway: temp files named by durable_temp_path (the durable
// write's and write_temp_file's), and ".tmp-*", the temp files of servers before it.
void remove_temp_files_below(const std::string& dir) {
  for (const auto& name : list_dir(dir)) {
    std::string path = dir + "/" + name;
    if (name.rfind(".tmp-", 0) == 0 || sla::checkpoint::is_durable_temp_name(name)) {
      remove_tree(path);
    } else if (file_size_or_missing(path) < 0) {
      remove_temp_files_below(path);
    }
  }
}

// Commits read back are cached; the cache is dropped as a whole past this many (they are re-read
// from disk on demand), so memory does not grow with the number of commits ever made.
constexpr size_t kCommitCacheEntries = 256;

}  // namespace

std::string lfs_pointer_text(const std::string& sha256, uint64_t size) {
  return "version https://git-lfs.github.com/spec/v1\noid sha256:" + sha256 + "\nsize " + std::to_string(size) + "\n";
}

void check_repo_path(const std::string& path) {
  if (path.empty() || path.size() > 4096 || path.front() == '/' || path.find('\0') != std::string::npos) {
    throw bad_request("invalid path in repo: '" + path + "'");
  }
  size_t start = 0;
  bool first = true;
  while (true) {
    size_t slash = path.find('/', start);
    std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == ".." || (first && part == ".git")) {
      throw bad_request("invalid path in repo: '" + path + "'");
    }
    if (slash == std::string::npos) return;
    start = slash + 1;
    first = false;
  }
}

RepoStore::RepoStore(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  for (const char* sub : {"/objects", "/uploads", "/tmp", "/repos"}) make_dirs(root_ + sub);
  lock_ = lock_file(root_ + "/lock");
  if (lock_.get() < 0) throw std::runtime_error("root " + root_ + " is in use by another hub serve process");
  // Nobody else writes here now: every temp file and unfinished upload is a leftover.
  remove_stale_uploads(0);
  remove_temp_files_below(root_ + "/repos");
  scope_lfs_objects_of_older_repos();
  std::string secret_path = root_ + "/secret";
  if (!file_exists(secret_path)) write_file_atomic(secret_path, random_hex(32));
  secret_ = read_file(secret_path);
}

size_t RepoStore::remove_stale_uploads(int64_t max_age_seconds) {
  size_t removed = 0;
  for (const std::string& dir : {temp_dir(), uploads_dir()}) {
    for (const auto& name : list_dir(dir)) {
      std::string path = dir + "/" + name;
      int64_t age = seconds_since_modified(path);
      if (age < 0 || age < max_age_seconds) continue;
      remove_tree(path);
      ++removed;
    }
  }
  return removed;
}

void RepoStore::scope_lfs_objects_of_older_repos() {
  std::string repos = root_ + "/repos";
  for (const auto& type : list_dir(repos)) {
    for (const auto& ns : list_dir(repos + "/" + type)) {
      for (const auto& name : list_dir(repos + "/" + type + "/" + ns)) {
        RepoRef repo{type, ns, name};
        std::string meta_path = repo_dir(repo) + "/repo.json";
        if (!file_exists(meta_path)) continue;
        json meta = json::parse(read_file(meta_path));
        if (meta.value("lfs_scoped", false)) continue;
        make_dirs(repo_dir(repo) + "/lfs");
        for (const auto& file : list_dir(repo_dir(repo) + "/commits")) {
          if (file.size() != 45 || file.compare(40, 5, ".json") != 0) continue;
          for (const auto& [path, entry] : load_commit(repo, file.substr(0, 40))->tree) {
            if (entry.lfs && !file_exists(lfs_marker(repo, entry.sha256))) write_file_atomic(lfs_marker(repo, entry.sha256), "");
          }
        }
        meta["lfs_scoped"] = true;
        write_file_atomic(meta_path, meta.dump());
      }
    }
  }
}

std::string RepoStore::repo_dir(const RepoRef& repo) const {
  return root_ + "/repos/" + repo.type_plural + "/" + repo.ns + "/" + repo.name;
}

bool RepoStore::repo_exists(const RepoRef& repo) const { return file_exists(repo_dir(repo) + "/repo.json"); }

void RepoStore::require_repo(const RepoRef& repo) const {
  if (!repo_exists(repo)) throw HttpError(404, "RepoNotFound", "Repository not found: " + repo.id());
}

bool RepoStore::is_private(const RepoRef& repo) const {
  return json::parse(read_file(repo_dir(repo) + "/repo.json")).value("private", false);
}

bool RepoStore::create_repo(const RepoRef& repo, bool is_private) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (repo_exists(repo)) return false;
  std::string dir = repo_dir(repo);
  make_dirs(dir + "/refs/heads");
  make_dirs(dir + "/refs/pr");
  make_dirs(dir + "/commits");
  Commit first;
  first.summary = "initial commit";
  first.created_ns = now_ns();
  first.tree[".gitattributes"] = store_regular_content(kDefaultGitattributes);
  std::string id = write_commit(repo, std::move(first));
  write_file_atomic(dir + "/refs/heads/main", id);
  // repo.json last: its presence is what makes the repo exist.
  make_dirs(dir + "/lfs");
  json meta = {{"private", is_private}, {"created", now_ns()}, {"next_pr", 1}, {"lfs_scoped", true}};
  write_file_atomic(dir + "/repo.json", meta.dump());
  return true;
}

std::string RepoStore::ref_path(const RepoRef& repo, const std::string& revision) const {
  static const std::regex pr_ref(R"(refs/pr/([1-9][0-9]{0,8}))");
  std::smatch m;
  if (std::regex_match(revision, m, pr_ref)) return repo_dir(repo) + "/refs/pr/" + m[1].str();
  std::string branch = revision.rfind("refs/heads/", 0) == 0 ? revision.substr(11) : revision;
  if (!is_branch_name(branch)) return {};
  return repo_dir(repo) + "/refs/heads/" + branch;
}

std::shared_ptr<const Commit> RepoStore::load_commit(const RepoRef& repo, const std::string& id) const {
  std::string path = repo_dir(repo) + "/commits/" + id + ".json";
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = commit_cache_.find(path);
    if (it != commit_cache_.end()) return it->second;
  }
  if (!file_exists(path)) return nullptr;
  auto commit = std::make_shared<const Commit>(parse_commit_record(id, read_file(path)));
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (commit_cache_.size() >= kCommitCacheEntries) commit_cache_.clear();
  commit_cache_.emplace(path, commit);
  return commit;
}

std::shared_ptr<const Commit> RepoStore::resolve(const RepoRef& repo, const std::string& revision) const {
  require_repo(repo);
  if (is_commit_id(revision)) {
    if (auto c = load_commit(repo, revision)) return c;
  }
  std::string ref = ref_path(repo, revision);
  if (!ref.empty() && file_exists(ref)) {
    if (auto c = load_commit(repo, read_file(ref))) return c;
    throw std::runtime_error("ref " + ref + " names a missing commit");
  }
  std::string tag = tag_path(repo, revision);
  if (!tag.empty() && file_exists(tag)) {
    if (auto c = load_commit(repo, read_file(tag))) return c;
    throw std::runtime_error("tag " + tag + " names a missing commit");
  }
  if (auto c = commit_by_prefix(repo, revision)) return c;
  throw HttpError(404, "RevisionNotFound", "Invalid rev id: " + revision + " in " + repo.id());
}

std::string RepoStore::tag_path(const RepoRef& repo, const std::string& revision) const {
  std::string tag = revision.rfind("refs/tags/", 0) == 0 ? revision.substr(10) : revision;
  if (!is_branch_name(tag)) return {};
  return repo_dir(repo) + "/refs/tags/" + tag;
}

std::shared_ptr<const Commit> RepoStore::commit_by_prefix(const RepoRef& repo, const std::string& prefix) const {
  if (prefix.size() < 4 || prefix.size() >= 40 || !is_lower_hex(prefix)) return nullptr;
  std::string found;
  for (const auto& file : list_dir(repo_dir(repo) + "/commits")) {
    if (file.size() != 45 || file.compare(40, 5, ".json") != 0 || file.compare(0, prefix.size(), prefix) != 0) continue;
    if (!found.empty()) {
      throw HttpError(404, "RevisionNotFound", "Ambiguous rev id: " + prefix + " in " + repo.id());
    }
    found = file.substr(0, 40);
  }
  return found.empty() ? nullptr : load_commit(repo, found);
}

bool RepoStore::create_tag(const RepoRef& repo, const std::string& tag, const std::string& revision) {
  return create_ref(repo, "tags", "tag", tag, revision);
}


void RepoStore::delete_tag(const RepoRef& repo, const std::string& tag) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  require_repo(repo);
  std::string ref = tag_path(repo, tag);
  if (ref.empty() || !file_exists(ref)) throw HttpError(404, "RevisionNotFound", "Invalid tag: " + tag + " in " + repo.id());
  remove_file_durably(ref);
}

void RepoStore::delete_branch(const RepoRef& repo, const std::string& branch) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  require_repo(repo);
  std::string name = branch.rfind("refs/heads/", 0) == 0 ? branch.substr(11) : branch;
  if (name == "main") throw HttpError(403, "", "Cannot delete the default branch main of " + repo.id());
  std::string ref = is_branch_name(name) ? repo_dir(repo) + "/refs/heads/" + name : std::string();
  if (ref.empty() || !file_exists(ref)) {
    throw HttpError(404, "RevisionNotFound", "Invalid branch: " + branch + " in " + repo.id());
  }
  remove_file_durably(ref);
}

namespace {
// Files below dir, as paths relative to it ("a/b"), sorted.
void list_files_below(const std::string& dir, const std::string& prefix, std::vector<std::string>& out) {
  auto names = list_dir(dir);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string path = dir + "/" + name;
    if (sla::checkpoint::is_durable_temp_name(name) || name.rfind(".tmp-", 0) == 0) continue;
    if (file_size_or_missing(path) >= 0) {
      out.push_back(prefix + name);
    } else {
      list_files_below(path, prefix + name + "/", out);
    }
  }
}
}  // namespace

RepoStore::Refs RepoStore::list_refs(const RepoRef& repo) const {
  require_repo(repo);
  Refs refs;
  auto collect = [&](const std::string& sub, std::vector<Ref>& out) {
    std::vector<std::string> names;
    list_files_below(repo_dir(repo) + "/refs/" + sub, "", names);
    for (const auto& name : names) out.push_back({name, read_file(repo_dir(repo) + "/refs/" + sub + "/" + name)});
  };
  collect("heads", refs.branches);
  collect("tags", refs.tags);
  collect("pr", refs.pull_requests);
  return refs;
}

bool RepoStore::delete_repo(const RepoRef& repo) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (!repo_exists(repo)) return false;
  std::string dir = repo_dir(repo);
  // repo.json first: its absence is what makes the repo gone, even if the removal is cut short.
  remove_file_durably(dir + "/repo.json");
  remove_tree(dir);
  sync_parent_dir(dir);
  std::lock_guard<std::mutex> cache_lock(cache_mutex_);
  commit_cache_.clear();
  return true;
}

void RepoStore::set_private(const RepoRef& repo, bool is_private) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  require_repo(repo);
  std::string meta_path = repo_dir(repo) + "/repo.json";
  json meta = json::parse(read_file(meta_path));
  meta["private"] = is_private;
  write_file_atomic(meta_path, meta.dump());
}

std::vector<RepoRef> RepoStore::list_repos(const std::string& type_plural) const {
  std::vector<RepoRef> out;
  std::string base = root_ + "/repos/" + type_plural;
  for (const auto& ns : list_dir(base)) {
    for (const auto& name : list_dir(base + "/" + ns)) {
      RepoRef repo{type_plural, ns, name};
      if (repo_exists(repo)) out.push_back(repo);
    }
  }
  std::sort(out.begin(), out.end(), [](const RepoRef& a, const RepoRef& b) { return a.id() < b.id(); });
  return out;
}

std::string RepoStore::super_squash(const RepoRef& repo, const std::string& branch, const std::string& message) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  std::string ref = ref_path(repo, branch);
  if (ref.empty() || ref.find("/refs/heads/") == std::string::npos || !file_exists(ref)) {
    require_repo(repo);
    throw HttpError(404, "RevisionNotFound", "Invalid branch: " + branch + " in " + repo.id());
  }
  auto head = resolve(repo, branch);
  Commit squashed;
  squashed.summary = message;
  squashed.created_ns = now_ns();
  squashed.tree = head->tree;
  std::string id = write_commit(repo, std::move(squashed));
  write_file_atomic(ref, id);
  return id;
}

std::string RepoStore::write_commit(const RepoRef& repo, Commit commit) {
  std::string record = commit_record(commit).dump();
  std::string id = git_blob_sha1_hex(record);
  write_file_atomic(repo_dir(repo) + "/commits/" + id + ".json", record);
  return id;
}

CommitResult RepoStore::commit(const RepoRef& repo, const std::string& revision, const CommitRequest& request) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  auto base = resolve(repo, revision);
  std::string ref = ref_path(repo, revision);
  if (!request.create_pr && (ref.empty() || !file_exists(ref))) {
    throw HttpError(400, "", "cannot commit to " + revision + ": it is not a branch or a pull request ref");
  }
  if (!request.parent_commit.empty()) {
    std::string parent = request.parent_commit;
    for (char& c : parent) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (parent.size() < 5 || parent.size() > 40 || !is_lower_hex(parent) || base->id.compare(0, parent.size(), parent) != 0) {
      throw HttpError(412, "", "parentCommit " + request.parent_commit + " is not the head of " + revision + " (" +
                                   base->id + ")");
    }
  }
  Commit next;
  next.parents = {base->id};
  next.summary = request.summary;
  next.description = request.description;
  next.created_ns = now_ns();
  next.tree = base->tree;
  for (const auto& op : request.operations) apply_operation(next.tree, op);
  check_no_file_folder_clash(next.tree);

  // Accepted: only now do the staged inline files become objects.
  for (const auto& op : request.operations) {
    if (!op.staged_path.empty()) adopt_object(op.staged_path, op.entry.sha256);
  }
  CommitResult result;
  result.commit_id = write_commit(repo, std::move(next));
  if (request.create_pr) {
    std::string meta_path = repo_dir(repo) + "/repo.json";
    json meta = json::parse(read_file(meta_path));
    result.pr_number = meta.at("next_pr").get<int>();
    meta["next_pr"] = result.pr_number + 1;
    write_file_atomic(meta_path, meta.dump());
    ref = repo_dir(repo) + "/refs/pr/" + std::to_string(result.pr_number);
  }
  write_file_atomic(ref, result.commit_id);
  return result;
}

bool RepoStore::create_branch(const RepoRef& repo, const std::string& branch, const std::string& starting_point) {
  return create_ref(repo, "heads", "branch", branch, starting_point);
}

bool RepoStore::create_ref(const RepoRef& repo, const std::string& folder, const std::string& kind,
                           const std::string& name, const std::string& revision) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (!is_branch_name(name) || name.rfind("refs/", 0) == 0 || is_commit_id(name)) {
    throw bad_request("invalid " + kind + " name '" + name + "'");
  }
  auto target = resolve(repo, revision);
  std::string ref = repo_dir(repo) + "/refs/" + folder + "/" + name;
  if (file_exists(ref)) return false;
  make_dirs(ref.substr(0, ref.rfind('/')));
  write_file_atomic(ref, target->id);
  return true;
}

std::string RepoStore::object_path(const std::string& sha256) const {
  return root_ + "/objects/" + sha256.substr(0, 2) + "/" + sha256;
}

int64_t RepoStore::object_size(const std::string& sha256) const {
  if (sha256.size() != 64 || !is_lower_hex(sha256)) return -1;
  return file_size_or_missing(object_path(sha256));
}

void RepoStore::adopt_object(const std::string& temp_path, const std::string& sha256) {
  std::string path = object_path(sha256);
  if (file_exists(path)) {  // content-addressed: the stored copy is the same bytes
    ::unlink(temp_path.c_str());
    return;
  }
  make_dirs(root_ + "/objects/" + sha256.substr(0, 2));
  commit_temp_file(temp_path, path);
}

void RepoStore::adopt_lfs_object(const RepoRef& repo, const std::string& temp_path, const std::string& sha256) {
  adopt_object(temp_path, sha256);
  std::string marker = lfs_marker(repo, sha256);
  if (!file_exists(marker)) {
    make_dirs(repo_dir(repo) + "/lfs");
    write_file_atomic(marker, "");
  }
}

std::string RepoStore::lfs_marker(const RepoRef& repo, const std::string& sha256) const {
  return repo_dir(repo) + "/lfs/" + sha256;
}

int64_t RepoStore::lfs_object_size(const RepoRef& repo, const std::string& sha256) const {
  if (sha256.size() != 64 || !is_lower_hex(sha256) || !file_exists(lfs_marker(repo, sha256))) return -1;
  return object_size(sha256);
}

FileEntry RepoStore::stage_regular_content(const std::string& data, std::string& temp_path) const {
  FileEntry entry{sha256_hex(data), git_blob_sha1_hex(data), data.size(), false};
  temp_path = write_temp_file(temp_dir(), data);
  return entry;
}

FileEntry RepoStore::store_regular_content(const std::string& data) {
  FileEntry entry{sha256_hex(data), git_blob_sha1_hex(data), data.size(), false};
  if (object_size(entry.sha256) < 0) adopt_object(write_temp_file(temp_dir(), data), entry.sha256);
  return entry;
}

}  // namespace sla::hub::server
