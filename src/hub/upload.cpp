#include "upload.h"

#include "sla/checkpoint/utf8.h"
#include "sla/hub/common/hashing.h"
#include "untrusted.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sla::hub {
namespace {

constexpr size_t kPreuploadChunk = 256;  // files per preupload and per LFS batch call
constexpr size_t kSampleBytes = 512;

// What we know about one item on the way to the commit.
struct Staged {
  const UploadItem* item = nullptr;
  uint64_t size = 0;
  std::string sample;  // first <= 512 bytes
  std::string mode;    // regular | lfs
  bool ignored = false;
  std::optional<std::string> remote_oid;
  std::string oid;      // sha256 (lfs) or git blob sha1 (regular)
  std::string content;  // regular files: the bytes, for the inline commit line
  bool unchanged = false;
};

std::string read_range(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HubError("E_IO", "cannot open " + path + ": " + std::strerror(errno));
  std::string data(max_bytes, '\0');
  in.read(data.data(), static_cast<std::streamsize>(max_bytes));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

uint64_t size_of(const UploadItem& item) {
  if (item.content) return item.content->size();
  struct stat st {};
  if (stat(item.local_path.c_str(), &st) != 0) throw HubError("E_IO", "cannot stat " + item.local_path + ": " + std::strerror(errno));
  return static_cast<uint64_t>(st.st_size);
}

std::string query_for(const CommitOptions& options) { return options.create_pr ? "?create_pr=1" : ""; }

template <class Fn>
void parallel_for(size_t count, int threads, Fn fn) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
  auto worker = [&] {
    for (size_t i; (i = next++) < count;) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (error) return;
      }
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, std::min<int>(threads, static_cast<int>(count))); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

std::vector<Staged> stage(const std::vector<UploadItem>& items) {
  std::vector<Staged> staged(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (!sla::checkpoint::is_valid_utf8(items[i].path_in_repo))  // a Linux name is bytes; the Hub's paths are UTF-8
      throw std::invalid_argument("file name is not UTF-8, which the Hub's paths must be: " + items[i].path_in_repo);
    Staged& s = staged[i];
    s.item = &items[i];
    s.size = size_of(items[i]);
    s.sample = items[i].content ? items[i].content->substr(0, kSampleBytes) : read_range(items[i].local_path, kSampleBytes);
  }
  return staged;
}

// POST preupload per chunk of 256; fills mode, ignored and remote_oid.
void preupload(HubClient& client, const RepoRef& repo, std::vector<Staged>& staged, const CommitOptions& options) {
  const std::string url = client.api_url(repo, "preupload/" + percent_encode(options.revision, false)) + query_for(options);
  for (size_t begin = 0; begin < staged.size(); begin += kPreuploadChunk) {
    const size_t end = std::min(staged.size(), begin + kPreuploadChunk);
    nlohmann::json files = nlohmann::json::array();
    for (size_t i = begin; i < end; ++i)
      files.push_back({{"path", staged[i].item->path_in_repo}, {"sample", base64_encode(staged[i].sample)}, {"size", staged[i].size}});
    const nlohmann::json body{{"files", files}};
    const auto answer = client.send_json("POST", url, &body, true);
    std::map<std::string, nlohmann::json> by_path;
    if (answer.contains("files") && answer["files"].is_array())
      for (const auto& f : answer["files"])
        if (f.is_object() && f.contains("path") && f["path"].is_string()) by_path[f["path"].get<std::string>()] = f;
    for (size_t i = begin; i < end; ++i) {
      Staged& s = staged[i];
      auto it = by_path.find(s.item->path_in_repo);
      if (it == by_path.end() || !it->second.contains("uploadMode") || !it->second.contains("shouldIgnore"))
        throw HubError("E_HUB_PROTOCOL", "preupload answer lacks " + s.item->path_in_repo + " (POST " + url + ")", 200, url);
      s.mode = it->second["uploadMode"].is_string() ? it->second["uploadMode"].get<std::string>() : "";
      if (s.mode != "lfs" && s.mode != "regular")
        throw HubError("E_HUB_PROTOCOL", "preupload uploadMode for " + s.item->path_in_repo + " is neither lfs nor regular", 200, url);
      if (s.size == 0) s.mode = "regular";  // empty files are always regular
      s.ignored = it->second["shouldIgnore"].is_boolean() && it->second["shouldIgnore"].get<bool>();
      if (it->second.contains("oid") && it->second["oid"].is_string()) s.remote_oid = it->second["oid"].get<std::string>();
    }
  }
}

// The ids, computed once: sha256 for LFS files, the git blob sha1 (and the bytes) for regular ones.
// The sha256 of a file, streamed, reporting the bytes hashed.
std::string sha256_file_with_progress(const std::string& path, const std::function<void(uint64_t)>& progress) {
  if (!progress) return sha256_file_hex(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HubError("E_IO", "cannot read " + path);
  ContentHasher hasher(ContentHasher::Kind::kSha256, 0);
  std::vector<char> buffer(size_t{4} << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    hasher.update(buffer.data(), got);
    progress(got);
  }
  if (in.bad()) throw HubError("E_IO", "reading " + path + " failed");
  return hasher.hex();
}

void compute_oids(std::vector<Staged>& staged, int threads, const CommitOptions& options) {
  if (options.on_hash_total) {
    uint64_t total = 0;
    for (const auto& s : staged)
      if (!s.ignored && s.mode == "lfs" && !s.item->content) total += s.size;
    options.on_hash_total(total);
  }
  parallel_for(staged.size(), threads, [&](size_t i) {
    Staged& s = staged[i];
    if (s.ignored) return;
    if (s.mode == "lfs") {
      s.oid = s.item->content ? sha256_hex(*s.item->content) : sha256_file_with_progress(s.item->local_path, options.hash_progress);
    } else {
      s.content = s.item->content ? *s.item->content : read_range(s.item->local_path, s.size);
      if (s.content.size() != s.size) throw HubError("E_IO", s.item->local_path + " changed size while uploading");
      s.oid = git_blob_sha1_hex(s.content);
    }
    s.unchanged = s.remote_oid && *s.remote_oid == s.oid;
  });
}

std::string rewrite_href(const HubClient& client, const std::string& href) {
  static const std::string hub = "https://huggingface.co";
  if (href.rfind(hub, 0) == 0) return client.config().endpoint + href.substr(hub.size());
  return href;
}

// One PUT of a byte range of a file (or of in-memory content): a whole basic upload or one part.
struct PutTask {
  const Staged* file = nullptr;
  std::string url;
  uint64_t offset = 0, length = 0;
  std::string* etag_out = nullptr;  // multipart: the part's ETag, verbatim
};

struct LfsJob {
  const Staged* file = nullptr;
  std::string completion_url;  // multipart only
  std::vector<std::string> part_etags;
  std::optional<std::string> verify_url;
};

void run_put(HubClient& client, const PutTask& task, const CommitOptions& options) {
  HttpRequest request;
  request.method = "PUT";
  request.url = task.url;
  request.headers = {{"user-agent", client.config().user_agent}};  // no authorization on upload URLs
  if (task.file->item->content)
    request.body = task.file->item->content->substr(task.offset, task.length);
  else
    request.body_file = HttpRequest::FileRange{task.file->item->local_path, task.offset, task.length};
  const HttpResponse response = client.send(request, true);
  if (task.etag_out) {
    auto etag = response.header("etag");
    if (!etag || etag->empty())
      throw HubError("E_HUB_PROTOCOL", "part upload answered without an ETag (PUT " + task.url + ")", response.status, task.url);
    *task.etag_out = *etag;
  }
  if (options.progress) options.progress(task.length);
}

// A number the server sent as a JSON number or a decimal string; HubError E_HUB_PROTOCOL otherwise.
uint64_t protocol_number(const nlohmann::json& value, const std::string& what, const std::string& url) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (!text.empty() && text.size() <= 19 && std::all_of(text.begin(), text.end(), ::isdigit)) return std::stoull(text);
  }
  throw HubError("E_HUB_PROTOCOL", what + " is not a number: " + escape_untrusted(value.dump()), 0, url);
}

// One POST to the LFS batch endpoint for some of the files; the answer's objects array.
nlohmann::json request_lfs_batch(HubClient& client, const RepoRef& repo, const std::vector<Staged*>& files,
                                 const CommitOptions& options, const std::string& batch_url) {
  nlohmann::json objects = nlohmann::json::array();
  for (const Staged* f : files) objects.push_back({{"oid", f->oid}, {"size", f->size}});
  nlohmann::json body{{"operation", "upload"}, {"transfers", {"basic", "multipart"}}, {"objects", objects}, {"hash_algo", "sha256"}};
  if (!options.create_pr) body["ref"] = {{"name", options.revision}};
  HttpRequest request;
  request.method = "POST";
  request.url = batch_url;
  request.headers = client.hub_headers();
  request.headers.emplace_back("Accept", "application/vnd.git-lfs+json");
  request.headers.emplace_back("Content-Type", "application/vnd.git-lfs+json");
  request.body = body.dump();
  const HttpResponse response = client.send(request, true);
  auto answer = nlohmann::json::parse(response.body, nullptr, false);
  if (!answer.is_object() || !answer.contains("objects") || !answer["objects"].is_array())
    throw HubError("E_HUB_PROTOCOL", "LFS batch answer has no objects (POST " + batch_url + ")", response.status, batch_url);
  return std::move(answer["objects"]);
}

// The parts of a multipart upload: header {"chunk_size": N, "1": url, "2": url, ...}; one PutTask
// per part, in order.
void plan_multipart(HubClient& client, LfsJob& job, const nlohmann::json& header, const std::string& href,
                    std::vector<PutTask>& puts) {
  const uint64_t chunk = protocol_number(header["chunk_size"], "multipart chunk_size of " + job.file->item->path_in_repo, href);
  std::vector<std::pair<int, std::string>> parts;
  for (const auto& [key, value] : header.items()) {
    if (key.empty() || key.size() > 9 || !std::all_of(key.begin(), key.end(), ::isdigit)) continue;
    if (!value.is_string()) throw HubError("E_HUB_PROTOCOL", "multipart part " + key + " URL is not a string", 0, href);
    parts.emplace_back(std::stoi(key), value.get<std::string>());
  }
  std::sort(parts.begin(), parts.end());
  const uint64_t expected = chunk == 0 ? 0 : (job.file->size + chunk - 1) / chunk;
  if (chunk == 0 || parts.size() != expected)
    throw HubError("E_HUB_PROTOCOL", "multipart upload of " + job.file->item->path_in_repo + " offers " +
                                         std::to_string(parts.size()) + " parts, expected " + std::to_string(expected), 0, href);
  job.completion_url = href;
  job.part_etags.resize(parts.size());
  for (size_t p = 0; p < parts.size(); ++p) {
    const uint64_t offset = p * chunk;
    puts.push_back({job.file, rewrite_href(client, parts[p].second), offset, std::min(chunk, job.file->size - offset), nullptr});
  }
}

// One object of a batch answer: nothing (already stored), or a job and its PUTs.
void plan_lfs_object(HubClient& client, const nlohmann::json& object, const std::map<std::string, const Staged*>& by_oid,
                     const std::string& batch_url, std::vector<LfsJob>& jobs, std::vector<PutTask>& puts) {
  if (!object.is_object() || !object.contains("oid") || !object["oid"].is_string()) return;
  auto it = by_oid.find(object["oid"].get<std::string>());
  if (it == by_oid.end()) return;
  const std::string& path = it->second->item->path_in_repo;
  if (object.contains("error")) {
    const auto& error = object["error"];
    const std::string message = error.is_object() && error.contains("message") && error["message"].is_string()
                                    ? error["message"].get<std::string>() : error.dump();
    throw HubError("E_HUB_LFS", "LFS batch refused " + path + ": " + message, 200, batch_url);
  }
  if (!object.contains("actions") || !object["actions"].is_object() || !object["actions"].contains("upload")) return;  // stored
  try {
    const auto& actions = object["actions"];
    const auto& upload = actions["upload"];
    LfsJob job;
    job.file = it->second;
    if (actions.contains("verify")) job.verify_url = rewrite_href(client, actions["verify"].at("href").get<std::string>());
    const std::string href = rewrite_href(client, upload.at("href").get<std::string>());
    const nlohmann::json header = upload.value("header", nlohmann::json::object());
    if (header.is_object() && header.contains("chunk_size")) {
      plan_multipart(client, job, header, href, puts);
    } else {
      puts.push_back({job.file, href, 0, job.file->size, nullptr});
    }
    jobs.push_back(std::move(job));
  } catch (const nlohmann::json::exception& e) {
    throw HubError("E_HUB_PROTOCOL", "LFS batch answer for " + path + " is malformed (" + e.what() + ")", 200, batch_url);
  }
}

// Multipart jobs: tell the server the parts are in (with their ETags); then the verify calls.
void complete_lfs_jobs(HubClient& client, const std::vector<LfsJob>& jobs) {
  for (const auto& job : jobs) {
    if (!job.completion_url.empty()) {
      nlohmann::json parts = nlohmann::json::array();
      for (size_t p = 0; p < job.part_etags.size(); ++p) parts.push_back({{"partNumber", p + 1}, {"etag", job.part_etags[p]}});
      HttpRequest request;
      request.method = "POST";
      request.url = job.completion_url;
      request.headers = {{"Accept", "application/vnd.git-lfs+json"}, {"Content-Type", "application/vnd.git-lfs+json"}};
      request.body = nlohmann::json{{"oid", job.file->oid}, {"parts", parts}}.dump();
      client.send(request, true);
    }
    if (job.verify_url) {
      const nlohmann::json body{{"oid", job.file->oid}, {"size", job.file->size}};
      client.send_json("POST", *job.verify_url, &body, true);
    }
  }
}

void upload_lfs(HubClient& client, const RepoRef& repo, const std::vector<Staged*>& lfs_files, const CommitOptions& options) {
  const std::string batch_url = client.config().endpoint + "/" + repo.web_prefix() + repo.id + ".git/info/lfs/objects/batch";
  std::vector<LfsJob> jobs;
  std::vector<PutTask> puts;
  for (size_t begin = 0; begin < lfs_files.size(); begin += kPreuploadChunk) {
    const std::vector<Staged*> chunk(lfs_files.begin() + begin, lfs_files.begin() + std::min(lfs_files.size(), begin + kPreuploadChunk));
    std::map<std::string, const Staged*> by_oid;
    for (const Staged* f : chunk) by_oid[f->oid] = f;
    for (const auto& object : request_lfs_batch(client, repo, chunk, options, batch_url))
      plan_lfs_object(client, object, by_oid, batch_url, jobs, puts);
  }
  // ETag slots are bound after `jobs` stops growing, so the pointers stay valid. The PUTs of a
  // job are consecutive: one for a basic upload, one per part for a multipart one.
  size_t put_index = 0;
  for (auto& job : jobs) {
    if (job.completion_url.empty()) {
      ++put_index;
      continue;
    }
    for (auto& etag : job.part_etags) puts[put_index++].etag_out = &etag;
  }
  parallel_for(puts.size(), options.threads, [&](size_t i) { run_put(client, puts[i], options); });
  complete_lfs_jobs(client, jobs);
}

std::vector<PlannedFile> planned(const std::vector<Staged>& staged) {
  std::vector<PlannedFile> out;
  for (const auto& s : staged) out.push_back({s.item->path_in_repo, s.size, s.mode.empty() ? "unknown" : s.mode, s.unchanged, s.ignored});
  return out;
}

}  // namespace

std::string base64_encode(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::vector<PlannedFile> plan_upload(HubClient& client, const RepoRef& repo, const std::vector<UploadItem>& items,
                                     const CommitOptions& options) {
  std::vector<Staged> staged = stage(items);
  preupload(client, repo, staged, options);
  return planned(staged);
}

CommitResult upload_commit(HubClient& client, const RepoRef& repo, const std::vector<UploadItem>& items,
                           const CommitOptions& options) {
  std::vector<Staged> staged = stage(items);  // first: items that cannot go up leave no repo behind
  if (options.create_repo) client.create_repo(repo, options.private_repo);
  CommitResult result;
  std::string parent;
  try {
    parent = client.revision_sha(repo, options.revision);
  } catch (const HubError& e) {
    const bool missing = e.code() == "RevisionNotFound" || e.code() == "E_HUB_NOT_FOUND";
    const bool branch_name = options.revision.rfind("refs/", 0) != 0 && !(options.revision.size() == 40 && is_lower_hex(options.revision));
    if (!options.create_branch || !missing || !branch_name) throw;
    client.create_branch(repo, options.revision);
    result.branch_created = true;
    parent = client.revision_sha(repo, options.revision);
  }
  preupload(client, repo, staged, options);
  compute_oids(staged, options.threads, options);

  result.files = planned(staged);
  std::vector<Staged*> lfs_files;
  std::vector<Staged*> committed;
  uint64_t lfs_bytes = 0;
  for (auto& s : staged) {
    if (s.ignored || s.unchanged) continue;
    committed.push_back(&s);
    if (s.mode == "lfs") {
      lfs_files.push_back(&s);
      lfs_bytes += s.size;
    }
  }
  if (committed.empty()) {
    result.no_op = true;
    result.commit_oid = parent;
    result.revision = options.revision;
    result.commit_url = client.config().endpoint + "/" + repo.web_prefix() + repo.id + "/commit/" + parent;
    return result;
  }
  if (options.on_lfs_total) options.on_lfs_total(lfs_bytes);
  upload_lfs(client, repo, lfs_files, options);

  std::sort(committed.begin(), committed.end(),
            [](const Staged* a, const Staged* b) { return a->item->path_in_repo < b->item->path_in_repo; });
  std::string ndjson = nlohmann::json{{"key", "header"},
                                      {"value", {{"summary", options.message}, {"description", options.description}, {"parentCommit", parent}}}}
                           .dump() + "\n";
  for (const Staged* s : committed) {
    nlohmann::json line;
    if (s->mode == "lfs")
      line = {{"key", "lfsFile"}, {"value", {{"path", s->item->path_in_repo}, {"algo", "sha256"}, {"oid", s->oid}, {"size", s->size}}}};
    else
      line = {{"key", "file"}, {"value", {{"content", base64_encode(s->content)}, {"path", s->item->path_in_repo}, {"encoding", "base64"}}}};
    ndjson += line.dump() + "\n";
  }
  HttpRequest request;
  request.method = "POST";
  request.url = client.api_url(repo, "commit/" + percent_encode(options.revision, false)) + query_for(options);
  request.headers = client.hub_headers();
  request.headers.emplace_back("Content-Type", "application/x-ndjson");
  request.body = std::move(ndjson);
  const HttpResponse response = client.send(request, false);  // a commit is never re-sent
  const auto answer = nlohmann::json::parse(response.body, nullptr, false);
  if (!answer.is_object() || !answer.contains("commitOid") || !answer["commitOid"].is_string())
    throw HubError("E_HUB_PROTOCOL", "commit answer has no commitOid (POST " + request.url + ")", response.status, request.url);
  result.commit_oid = answer["commitOid"].get<std::string>();
  result.commit_url = answer.contains("commitUrl") && answer["commitUrl"].is_string() ? answer["commitUrl"].get<std::string>() : "";
  result.revision = options.revision;
  if (options.create_pr && answer.contains("pullRequestUrl") && answer["pullRequestUrl"].is_string()) {
    result.pull_request_url = answer["pullRequestUrl"].get<std::string>();
    const auto slash = result.pull_request_url.rfind('/');
    result.revision = "refs/pr/" + result.pull_request_url.substr(slash + 1);
  }
  return result;
}

}  // namespace sla::hub
