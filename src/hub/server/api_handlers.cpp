// /api/... handlers: whoami, repo creation and deletion, settings, listings, YAML validation, repo info, tree, refs, commits, tags, preupload, commit.
#include "bounded_json.h"
#include "call.h"
#include "file_util.h"
#include "sla/hub/common/hashing.h"
#include "sla/hub/common/hub_text.h"
#include "http_error.h"
#include "upload_mode.h"
#include "url_codec.h"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <cstring>
#include <ctime>
#include <set>

namespace sla::hub::server {
namespace {

using nlohmann::json;

// What a commit keeps in memory per operation beyond its path: the entry, hashes, container nodes.
constexpr size_t kOperationOverhead = 256;
constexpr size_t kMaxPathsInfoPaths = 100000;

std::string iso_time(int64_t ns) {
  std::time_t seconds = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>((ns / 1000000) % 1000));
  return std::string(buf) + ms;
}

std::string repo_url(const Call& call, const RepoRef& repo) { return call.base_url + "/" + repo.web_prefix() + repo.id(); }

const json& require_field(const json& object, const char* key, json::value_t type, const std::string& where) {
  auto it = object.find(key);
  bool ok = it != object.end() && (it->type() == type || (type == json::value_t::number_unsigned &&
                                                           it->is_number_integer() && it->get<int64_t>() >= 0));
  if (!ok) throw bad_request(std::string("missing or invalid \"") + key + "\" in " + where);
  return *it;
}

std::string gitattributes_at(ServerContext& ctx, const Commit& commit) {
  auto it = commit.tree.find(".gitattributes");
  return it == commit.tree.end() ? std::string() : read_file(ctx.store.object_path(it->second.sha256));
}

// Folder ids are not git tree hashes: a sha1 over the sorted entries below, stable per content.
std::string folder_oid(const Tree& tree, const std::string& folder) {
  std::string listing;
  std::string prefix = folder + "/";
  for (auto it = tree.lower_bound(prefix); it != tree.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    listing += it->first + ' ' + it->second.git_sha1 + '\n';
  }
  return git_blob_sha1_hex(listing);
}

json file_entry_json(const std::string& path, const FileEntry& e) {
  json j = {{"type", "file"}, {"path", path}, {"size", e.size}, {"oid", e.git_sha1}};
  if (e.lfs) {
    j["lfs"] = {{"oid", e.sha256}, {"size", e.size}, {"pointerSize", lfs_pointer_text(e.sha256, e.size).size()}};
  }
  return j;
}

CommitOperation parse_operation(ServerContext& ctx, const RepoRef& repo, const std::string& key, const json& value) {
  CommitOperation op;
  const std::string where = "commit line \"" + key + "\"";
  op.path = require_field(value, "path", json::value_t::string, where).get<std::string>();
  bool folder_slash = key == "deletedFolder" && !op.path.empty() && op.path.back() == '/';
  check_repo_path(folder_slash ? op.path.substr(0, op.path.size() - 1) : op.path);
  if (key == "file") {
    if (value.value("encoding", "base64") != "base64") throw bad_request("only base64 encoding is supported: " + op.path);
    const auto& content = require_field(value, "content", json::value_t::string, where).get_ref<const std::string&>();
    op.entry = ctx.store.stage_regular_content(base64_decode(content, "the content of " + op.path), op.staged_path);
  } else if (key == "lfsFile") {
    if (value.value("algo", "sha256") != "sha256") throw bad_request("only sha256 LFS objects are supported: " + op.path);
    std::string oid = require_field(value, "oid", json::value_t::string, where).get<std::string>();
    int64_t stored = ctx.store.lfs_object_size(repo, oid);
    if (stored < 0) throw bad_request("LFS object " + oid + " for " + op.path + " was not uploaded to " + repo.id());
    if (value.contains("size") && !(value["size"].is_number_integer() && value["size"].get<int64_t>() == stored)) {
      throw bad_request("LFS object " + oid + " for " + op.path + " has size " + std::to_string(stored) +
                        ", not " + value["size"].dump());
    }
    op.entry = FileEntry{oid, git_blob_sha1_hex(lfs_pointer_text(oid, stored)), static_cast<uint64_t>(stored), true};
  } else if (key == "deletedFile") {
    op.kind = CommitOperation::kDeleteFile;
  } else if (key == "deletedFolder") {
    op.kind = CommitOperation::kDeleteFolder;
  } else {
    throw bad_request("unknown commit line key \"" + key + "\"");
  }
  return op;
}

}  // namespace

void handle_whoami(ServerContext& ctx, Call& call) {
  const std::string& user = ctx.options.user;
  call.reply_json(200, {{"type", "user"},
                        {"id", user},
                        {"name", user},
                        {"fullname", user},
                        {"orgs", json::array()},
                        {"auth", {{"type", "access_token"}, {"accessToken", {{"displayName", "hub-serve"}, {"role", "write"}}}}}});
}

void handle_create_repo(ServerContext& ctx, Call& call) {
  json body = call.read_json_object(kJsonBodyLimit);
  std::string type = body.value("type", "model");
  if (body.contains("type") && body["type"].is_null()) type = "model";
  if (type != "model" && type != "dataset") throw bad_request("repo type '" + type + "' is not supported by this server");
  if (!body.contains("name") || !body["name"].is_string()) throw bad_request("missing \"name\"");
  std::string ns = body.contains("organization") && body["organization"].is_string()
                       ? body["organization"].get<std::string>()
                       : ctx.options.user;
  std::string name = body["name"].get<std::string>();
  if (!is_valid_repo_part(ns) || !is_valid_repo_part(name)) {
    throw bad_request("invalid repo id '" + ns + "/" + name + "': use [A-Za-z0-9._-], at most 96 characters");
  }
  bool is_private = body.value("private", false) || body.value("visibility", "public") == "private";
  RepoRef repo{type + "s", ns, name};
  std::string url = repo_url(call, repo);
  if (!ctx.store.create_repo(repo, is_private)) {
    call.reply_json(409, {{"error", "You already created this " + type + " repo"}, {"url", url}});
    return;
  }
  call.reply_json(200, {{"url", url}, {"name", repo.id()}, {"id", repo.id()}});
}

void handle_validate_yaml(ServerContext& ctx, Call& call) {
  // The client parses this body as JSON before it looks at the status, so every answer is JSON.
  json body;
  try {
    body = parse_json_bounded(call.read_body(kJsonBodyLimit), "validate-yaml body");
  } catch (const HttpError&) {
  }
  if (!body.is_object() || !body.contains("content") || !body["content"].is_string()) {
    call.reply_json(400, {{"errors", {{{"message", "expected {\"content\": <text>}"}}}}, {"warnings", json::array()}});
    return;
  }
  call.reply_json(200, {{"errors", json::array()}, {"warnings", json::array()}});
}

void handle_repo_info(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  auto commit = ctx.store.resolve(repo, revision);
  bool blobs = call.flag("blobs");
  json siblings = json::array();
  for (const auto& [path, e] : commit->tree) {
    json s = {{"rfilename", path}};
    if (blobs) {
      s["size"] = e.size;
      s["blobId"] = e.git_sha1;
      if (e.lfs) s["lfs"] = {{"sha256", e.sha256}, {"size", e.size}, {"pointerSize", lfs_pointer_text(e.sha256, e.size).size()}};
    }
    siblings.push_back(s);
  }
  json info = {{"_id", repo.id()},     {"id", repo.id()},         {"author", repo.ns},
               {"sha", commit->id},    {"lastModified", iso_time(commit->created_ns)},
               {"private", ctx.store.is_private(repo)},
               {"disabled", false},    {"gated", false},          {"downloads", 0},
               {"likes", 0},           {"tags", json::array()},   {"siblings", siblings}};
  if (repo.type_plural == "models") info["modelId"] = repo.id();
  call.reply_json(200, info);
}

void handle_tree(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision,
                 const std::string& path) {
  auto commit = ctx.store.resolve(repo, revision);
  call.res.set_header("X-Repo-Commit", commit->id);
  const Tree& tree = commit->tree;
  std::string folder = path;
  while (!folder.empty() && folder.back() == '/') folder.pop_back();
  if (!folder.empty()) check_repo_path(folder);
  std::string prefix = folder.empty() ? "" : folder + "/";
  bool recursive = call.flag("recursive");
  json entries = json::array();
  std::set<std::string> folders_seen;
  for (auto it = tree.lower_bound(prefix); it != tree.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string rest = it->first.substr(prefix.size());
    // Every folder between prefix and the file, or only the first one when not recursive.
    for (size_t slash = rest.find('/'); slash != std::string::npos; slash = rest.find('/', slash + 1)) {
      std::string sub = prefix + rest.substr(0, slash);
      if (folders_seen.insert(sub).second) {
        entries.push_back({{"type", "directory"}, {"path", sub}, {"oid", folder_oid(tree, sub)}, {"size", 0}});
      }
      if (!recursive) break;
    }
    if (recursive || rest.find('/') == std::string::npos) entries.push_back(file_entry_json(it->first, it->second));
  }
  if (entries.empty() && !folder.empty()) {
    throw HttpError(404, "EntryNotFound", "No folder " + folder + " in " + repo.id() + " at " + revision);
  }
  call.reply_json(200, entries);
}

void handle_paths_info(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  auto commit = ctx.store.resolve(repo, revision);
  std::string body = call.read_body(kJsonBodyLimit);
  std::vector<std::string> paths;
  if (!body.empty() && body[0] == '{') {  // JSON, as some clients send
    json doc = parse_json_bounded(body, "paths-info body");
    if (!doc.is_object() || !doc.contains("paths") || !doc["paths"].is_array()) {
      throw bad_request("paths-info: expected {\"paths\": [...]}");
    }
    for (const auto& p : doc["paths"]) {
      if (p.is_string()) paths.push_back(p.get<std::string>());
    }
  } else {  // huggingface_hub sends a form: paths=a&paths=b&expand=False
    if (static_cast<size_t>(std::count(body.begin(), body.end(), '&')) >= kMaxPathsInfoPaths) {
      throw HttpError(413, "", "paths-info: more than " + std::to_string(kMaxPathsInfoPaths) + " form fields");
    }
    for (const auto& [key, value] : decode_form(body)) {
      if (key == "paths") paths.push_back(value);
    }
  }
  // Like the Hub: paths that do not exist are left out of the answer.
  json entries = json::array();
  for (std::string path : paths) {
    while (!path.empty() && path.back() == '/') path.pop_back();
    auto file = commit->tree.find(path);
    if (file != commit->tree.end()) {
      entries.push_back(file_entry_json(path, file->second));
    } else if (!path.empty()) {
      std::string prefix = path + "/";
      auto below = commit->tree.lower_bound(prefix);
      if (below != commit->tree.end() && below->first.compare(0, prefix.size(), prefix) == 0) {
        entries.push_back({{"type", "directory"}, {"path", path}, {"oid", folder_oid(commit->tree, path)}, {"size", 0}});
      }
    }
  }
  call.res.set_header("X-Repo-Commit", commit->id);
  call.reply_json(200, entries);
}

void handle_create_branch(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch) {
  ctx.store.require_repo(repo);
  std::string text = call.read_body(kJsonBodyLimit);
  json body = text.empty() ? json() : parse_json_bounded(text, "create-branch body");
  std::string start = "main";
  if (body.is_object() && body.contains("startingPoint") && body["startingPoint"].is_string()) {
    start = body["startingPoint"].get<std::string>();
  }
  if (!ctx.store.create_branch(repo, branch, start)) {
    throw HttpError(409, "", "Reference already exists: refs/heads/" + branch);
  }
  call.reply_json(200, json::object());
}

void handle_preupload(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  auto commit = ctx.store.resolve(repo, revision);
  json body = call.read_json_object(kJsonBodyLimit);
  if (!body.contains("files") || !body["files"].is_array()) throw bad_request("preupload: missing \"files\" array");
  std::string gitattributes = gitattributes_at(ctx, *commit);
  json answers = json::array();
  for (const auto& file : body["files"]) {
    if (!file.is_object()) throw bad_request("preupload: every file must be an object");
    std::string path = require_field(file, "path", json::value_t::string, "preupload file").get<std::string>();
    check_repo_path(path);
    uint64_t size = require_field(file, "size", json::value_t::number_unsigned, "preupload file " + path).get<uint64_t>();
    std::string sample = base64_decode(file.value("sample", ""), "the sample of " + path);
    json answer = {{"path", path},
                   {"uploadMode", wants_lfs(gitattributes, path, size, sample) ? "lfs" : "regular"},
                   {"shouldIgnore", false},
                   {"oid", nullptr}};
    auto current = commit->tree.find(path);
    if (current != commit->tree.end()) answer["oid"] = current->second.lfs ? current->second.sha256 : current->second.git_sha1;
    answers.push_back(answer);
  }
  call.reply_json(200, {{"files", answers}, {"commitOid", commit->id}});
}

// The NDJSON body is read line by line as it arrives: no line may pass kCommitLineLimit, no line
// nests deeper than parse_json_bounded allows, the paths and messages kept pass no
// kCommitMetadataLimit, and the whole body no kCommitBodyLimit. Inline files go to staged temp
// files as their lines are read; a refused commit removes them, so it leaves nothing behind.
void handle_commit(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  ctx.store.require_repo(repo);
  CommitRequest request;
  request.create_pr = call.flag("create_pr");
  struct DiscardStagedUnlessCommitted {
    const CommitRequest& request;
    bool committed = false;
    ~DiscardStagedUnlessCommitted() {
      if (committed) return;
      for (const auto& op : request.operations) {
        if (!op.staged_path.empty()) ::unlink(op.staged_path.c_str());
      }
    }
  } staged{request};

  bool have_header = false;
  size_t line_number = 0;
  size_t metadata = 0;
  auto keep = [&](size_t bytes) {
    metadata += bytes;
    if (metadata > kCommitMetadataLimit) {
      throw HttpError(413, "", "commit: more than " + std::to_string(kCommitMetadataLimit) +
                                   " bytes of paths and messages; split it into several commits");
    }
  };
  std::string line;
  auto take_line = [&] {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) return;
    const std::string where = "commit line " + std::to_string(line_number);
    json item = parse_json_bounded(line, where);
    if (line.capacity() > (1u << 20)) std::string().swap(line);  // the parsed copy is enough now
    if (!item.is_object() || !item.contains("key") || !item["key"].is_string() || !item.contains("value") ||
        !item["value"].is_object()) {
      throw bad_request(where + " is not {\"key\": ..., \"value\": {...}}");
    }
    const std::string key = item["key"].get<std::string>();
    const json& value = item["value"];
    if (key == "header") {
      if (have_header) throw bad_request("commit has two header lines");
      have_header = true;
      request.summary = value.value("summary", "");
      if (request.summary.empty()) throw bad_request("commit header needs a non-empty \"summary\"");
      request.description = value.contains("description") && value["description"].is_string() ? value["description"].get<std::string>() : "";
      if (value.contains("parentCommit") && value["parentCommit"].is_string()) request.parent_commit = value["parentCommit"].get<std::string>();
      keep(request.summary.size() + request.description.size() + request.parent_commit.size());
    } else {
      if (!have_header) throw bad_request("the first commit line must be the header");
      request.operations.push_back(parse_operation(ctx, repo, key, value));
      keep(request.operations.back().path.size() + kOperationOverhead);
    }
  };
  call.stream_body(kCommitBodyLimit, [&](const char* data, size_t size) {
    while (size > 0) {
      const char* newline = static_cast<const char*>(std::memchr(data, '\n', size));
      size_t piece = newline ? static_cast<size_t>(newline - data) : size;
      if (line.size() + piece > kCommitLineLimit) {
        throw HttpError(413, "", "commit line " + std::to_string(line_number + 1) + " is longer than " +
                                     std::to_string(kCommitLineLimit) + " bytes");
      }
      line.append(data, piece);
      if (!newline) return;
      take_line();
      line.clear();
      data += piece + 1;
      size -= piece + 1;
    }
  });
  take_line();  // the last line may end without a newline
  if (!have_header) throw bad_request("empty commit: no header line");
  CommitResult result = ctx.store.commit(repo, revision, request);
  staged.committed = true;
  std::string url = repo_url(call, repo);
  json answer = {{"success", true},
                 {"commitOid", result.commit_id},
                 {"commitUrl", url + "/commit/" + result.commit_id},
                 {"commitMessage", request.summary},
                 {"hookOutput", ""},
                 {"pullRequestUrl", nullptr}};
  if (result.pr_number > 0) answer["pullRequestUrl"] = url + "/discussions/" + std::to_string(result.pr_number);
  call.reply_json(200, answer);
}

}  // namespace sla::hub::server

namespace sla::hub::server {
namespace {

// One page of a listing, as the Hub pages: `limit` items per page (bounded), `p` the page index,
// and a Link header to the next page that the client's paginate() follows.
struct Page {
  size_t limit = 50;
  size_t index = 0;
};

size_t small_number_param(const Call& call, const char* name, size_t fallback, size_t max) {
  if (!call.req.has_param(name)) return fallback;
  std::string v = call.req.get_param_value(name);
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    throw bad_request(std::string("query parameter ") + name + " is not a number: '" + v.substr(0, 40) + "'");
  }
  return std::min<size_t>(std::stoul(v), max);
}

Page page_of(const Call& call, size_t max_limit) {
  Page page;
  page.limit = std::max<size_t>(1, small_number_param(call, "limit", 50, max_limit));
  page.index = small_number_param(call, "p", 0, 100000000);
  return page;
}

void link_next_page(Call& call, const Page& page) {
  std::string url = call.base_url + call.req.target.substr(0, call.req.target.find('?')) + "?p=" + std::to_string(page.index + 1) +
                    "&limit=" + std::to_string(page.limit);
  for (const auto& [key, value] : call.req.params) {
    if (key != "p" && key != "limit") url += "&" + percent_encode(key, false) + "=" + percent_encode(value, false);
  }
  call.res.set_header("Link", "<" + url + ">; rel=\"next\"");
}

}  // namespace

void handle_list_refs(ServerContext& ctx, Call& call, const RepoRef& repo) {
  auto refs = ctx.store.list_refs(repo);
  auto listing = [](const std::vector<RepoStore::Ref>& list, const std::string& prefix) {
    json out = json::array();
    for (const auto& r : list) out.push_back({{"name", r.name}, {"ref", prefix + r.name}, {"targetCommit", r.commit}});
    return out;
  };
  json body = {{"branches", listing(refs.branches, "refs/heads/")},
               {"tags", listing(refs.tags, "refs/tags/")},
               {"converts", json::array()}};
  if (call.flag("include_prs")) body["pullRequests"] = listing(refs.pull_requests, "refs/pr/");
  call.reply_json(200, body);
}

void handle_list_commits(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  Page page = page_of(call, 1000);
  auto commit = ctx.store.resolve(repo, revision);
  bool formatted = false;
  for (const auto& [key, value] : call.req.params) formatted |= (key == "expand[]" || key == "expand") && value == "formatted";
  // First-parent history, newest first.
  size_t skip = page.index * page.limit;
  json items = json::array();
  while (commit && items.size() < page.limit) {
    if (skip > 0) {
      --skip;
    } else {
      json item = {{"id", commit->id},
                   {"authors", json::array({{{"user", ctx.options.user}}})},
                   {"date", iso_time(commit->created_ns)},
                   {"title", commit->summary},
                   {"message", commit->description}};
      if (formatted) item["formatted"] = {{"title", commit->summary}, {"message", commit->description}};
      items.push_back(item);
    }
    commit = commit->parents.empty() ? nullptr : ctx.store.commit_by_id(repo, commit->parents.front());
  }
  if (commit) link_next_page(call, page);
  call.reply_json(200, items);
}

void handle_create_tag(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision) {
  ctx.store.require_repo(repo);
  json body = call.read_json_object(kJsonBodyLimit);
  if (!body.contains("tag") || !body["tag"].is_string()) throw bad_request("create tag: missing \"tag\"");
  std::string tag = body["tag"].get<std::string>();
  if (!ctx.store.create_tag(repo, tag, revision)) throw HttpError(409, "", "Tag already exists: refs/tags/" + tag);
  call.reply_json(200, json::object());
}

void handle_delete_tag(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& tag) {
  ctx.store.delete_tag(repo, tag);
  call.reply_json(200, json::object());
}

void handle_delete_branch(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch) {
  ctx.store.delete_branch(repo, branch);
  call.reply_json(200, json::object());
}

void handle_super_squash(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch) {
  ctx.store.require_repo(repo);
  std::string text = call.read_body(kJsonBodyLimit);
  json body = text.empty() ? json::object() : parse_json_bounded(text, "super-squash body");
  std::string message = "Super-squash branch '" + branch + "'";
  if (body.is_object() && body.contains("message") && body["message"].is_string()) message = body["message"].get<std::string>();
  call.reply_json(200, {{"commitId", ctx.store.super_squash(repo, branch, message)}});
}

void handle_repo_settings(ServerContext& ctx, Call& call, const RepoRef& repo) {
  ctx.store.require_repo(repo);
  json body = call.read_json_object(kJsonBodyLimit);
  std::optional<bool> make_private;
  if (body.contains("private") && body["private"].is_boolean()) make_private = body["private"].get<bool>();
  if (body.contains("visibility")) {
    const json& v = body["visibility"];
    if (!v.is_string() || (v != "private" && v != "public")) {
      throw bad_request("settings: visibility must be \"private\" or \"public\" on this server");
    }
    make_private = v == "private";
  }
  if (body.contains("gated") && !(body["gated"].is_boolean() && !body["gated"].get<bool>())) {
    throw bad_request("settings: gated repos are not supported by this server");
  }
  if (make_private) ctx.store.set_private(repo, *make_private);
  call.reply_json(200, json::object());
}

void handle_delete_repo(ServerContext& ctx, Call& call) {
  json body = call.read_json_object(kJsonBodyLimit);
  std::string type = body.contains("type") && body["type"].is_string() ? body["type"].get<std::string>() : "model";
  if (type != "model" && type != "dataset") throw bad_request("repo type '" + type + "' is not supported by this server");
  if (!body.contains("name") || !body["name"].is_string()) throw bad_request("missing \"name\"");
  std::string ns = body.contains("organization") && body["organization"].is_string()
                       ? body["organization"].get<std::string>()
                       : ctx.options.user;
  RepoRef repo = make_repo_ref(type + "s", ns, body["name"].get<std::string>());
  if (!ctx.store.delete_repo(repo)) throw HttpError(404, "RepoNotFound", "Repository not found: " + repo.id());
  call.reply_json(200, json::object());
}

void handle_list_repos(ServerContext& ctx, Call& call, const std::string& type_plural) {
  Page page = page_of(call, 1000);
  std::string search = call.req.get_param_value("search");
  std::string author = call.req.get_param_value("author");
  size_t skip = page.index * page.limit;
  json items = json::array();
  bool more = false;
  for (const RepoRef& repo : ctx.store.list_repos(type_plural)) {
    if (!author.empty() && repo.ns != author) continue;
    if (!search.empty() && repo.id().find(search) == std::string::npos) continue;
    bool is_private = ctx.store.is_private(repo);
    if (is_private && !call.authenticated) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    if (items.size() == page.limit) {
      more = true;
      break;
    }
    auto head = ctx.store.resolve(repo, "main");
    json item = {{"_id", repo.id()},  {"id", repo.id()},       {"author", repo.ns},
                 {"sha", head->id},   {"lastModified", iso_time(head->created_ns)},
                 {"private", is_private}, {"gated", false}, {"disabled", false},
                 {"downloads", 0},    {"likes", 0},            {"tags", json::array()}};
    if (type_plural == "models") item["modelId"] = repo.id();
    items.push_back(item);
  }
  if (more) link_next_page(call, page);
  call.reply_json(200, items);
}

}  // namespace sla::hub::server
