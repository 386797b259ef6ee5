#include "download.h"

#include "sla/hub/common/hashing.h"
#include "sla/hub/common/hub_text.h"
#include "untrusted.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace sla::hub {
namespace {

constexpr int kMaxFailuresWithoutProgress = 5;  // the resume loop of section 5.2
constexpr int kMaxTreePages = 100000;
// Python refuses files over 50 GB on the plain HTTP path (Xet is needed); so do we, so that a size
// a server declares cannot make us write without end.
constexpr uint64_t kMaxDownloadBytes = 50'000'000'000ULL;

uint64_t parse_size(const std::string& text, const std::string& url) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos && text.size() <= 19) {
    const unsigned long long value = std::stoull(text);
    if (value <= kMaxDownloadBytes) return value;
    refuse_value("size", text, "larger than the " + std::to_string(kMaxDownloadBytes) + " bytes downloaded over HTTP",
                 "HEAD " + url);
  }
  throw HubError("E_HUB_PROTOCOL", "bad size \"" + escape_untrusted(text) + "\" in the answer to HEAD " + url, 0, url);
}

std::optional<std::string> next_link(const HttpResponse& response) {
  static const std::regex next(R"re(<([^>]+)>\s*;\s*rel="?next"?)re");
  std::smatch m;
  const std::string link = response.header("link").value_or("");
  if (std::regex_search(link, m, next)) return m[1].str();
  return std::nullopt;
}

bool is_relative_location(const std::string& location) {
  const auto colon = location.find(':'), delimiter = location.find_first_of("/?");
  const bool has_scheme = colon != std::string::npos && (delimiter == std::string::npos || colon < delimiter);
  return !has_scheme && location.rfind("//", 0) != 0;
}

// Reads the first `size` bytes of fd into the hasher; false when they cannot be read.
bool hash_existing(int fd, uint64_t size, ContentHasher& hasher) {
  std::vector<char> buffer(1 << 20);
  for (uint64_t done = 0; done < size;) {
    const ssize_t n = pread(fd, buffer.data(), std::min<uint64_t>(buffer.size(), size - done), static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    hasher.update(buffer.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace

bool matches_any_glob(const std::string& path, const std::vector<std::string>& globs) {
  for (const auto& glob : globs)
    if (fnmatch(glob.c_str(), path.c_str(), 0) == 0) return true;
  return false;
}

FileMetadata fetch_file_metadata(HubClient& client, const RepoRef& repo, const std::string& revision,
                                 const std::string& path) {
  std::string url = client.resolve_url(repo, revision, path);
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    HttpRequest request;
    request.method = "HEAD";
    request.url = url;
    request.headers = client.hub_headers();
    request.headers.emplace_back("Accept-Encoding", "identity");
    const HttpResponse response = client.send(request, true);
    const bool redirect = response.status >= 300 && response.status < 400;
    const std::string location = response.header("location").value_or("");
    if (redirect && !location.empty() && is_relative_location(location)) {
      // A relative redirect (a renamed repo): HEAD the new path on the same host, query dropped.
      url = resolve_location(url, location.substr(0, location.find('?')));
      continue;
    }
    const std::string where = "HEAD " + url;
    FileMetadata meta;
    const auto commit = response.header("x-repo-commit");
    const auto linked_etag = response.header("x-linked-etag");
    const auto etag = linked_etag ? linked_etag : response.header("etag");
    auto size = response.header("x-linked-size");
    if (!size && !redirect) size = response.header("content-length");
    if (!commit || !etag || !size)
      throw HubError("E_HUB_PROTOCOL", where + " lacks X-Repo-Commit, an ETag or a size: not a Hub file URL", response.status, url);
    meta.commit = checked_commit(*commit, "X-Repo-Commit", where);
    meta.etag = checked_etag(*etag, linked_etag ? "X-Linked-Etag" : "ETag", where);
    meta.size = parse_size(*size, url);
    meta.download_url = redirect && !location.empty() ? resolve_location(url, location) : url;
    return meta;
  }
  throw HubError("E_HUB_PROTOCOL", "more than " + std::to_string(kMaxRedirects) + " redirects resolving " + path, 0, url);
}

namespace {

// The partial file of one download (<blob>.incomplete): what it holds so far, fed through the hash
// as it grows. Kept when the download stops for a reason that does not condemn its bytes (the
// network, an HTTP error, a kill): the next pull resumes it. Removed when the content is proven
// wrong (fail()), and when it holds nothing.
class PartialDownload {
 public:
  PartialDownload(const FileMetadata& meta, const std::string& path, bool sha256, const ProgressFn& progress)
      : meta_(meta), path_(path), progress_(progress),
        hasher_(sha256 ? ContentHasher::Kind::kSha256 : ContentHasher::Kind::kGitBlobSha1, meta.size) {
    // O_NOFOLLOW: the partial file is ours, never a link planted in its place.
    fd_ = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) throw HubError("E_IO", "cannot open " + path + ": " + std::strerror(errno));
  }
  ~PartialDownload() {
    if (fd_ >= 0) close(fd_);
    if (discard_ || (!done_ && received_ == 0)) unlink(path_.c_str());
  }
  PartialDownload(const PartialDownload&) = delete;
  PartialDownload& operator=(const PartialDownload&) = delete;

  // Keeps what an earlier pull left when it is a prefix of the right content, else starts over.
  void resume_existing() {
    struct stat st {};
    if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) throw fail("E_IO", path_ + " is not a regular file");
    received_ = static_cast<uint64_t>(st.st_size);
    if (received_ > meta_.size || (received_ > 0 && !hash_existing(fd_, received_, hasher_))) {
      if (ftruncate(fd_, 0) != 0) throw fail("E_IO", "cannot truncate " + path_ + ": " + std::strerror(errno));
      received_ = 0;
      hasher_.restart();
    }
    if (received_ > 0 && progress_) progress_(received_);
  }

  uint64_t received() const { return received_; }
  bool complete() const { return received_ >= meta_.size; }

  // The body sink of one GET (first_chunk: this is the answer's first piece); false stops it.
  bool write(bool first_chunk, int status, const char* data, size_t size) {
    if (first_chunk && status == 200 && received_ > 0) {
      // The server ignored our Range: start over from byte 0.
      if (ftruncate(fd_, 0) != 0) return false;
      received_ = 0;
      hasher_.restart();
    }
    if (received_ + size > meta_.size) {
      write_error_ = "the server sent more than the " + std::to_string(meta_.size) + " bytes it announced";
      content_error_ = true;
      return false;
    }
    for (size_t done = 0; done < size;) {
      const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(received_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        write_error_ = "cannot write " + path_ + ": " + std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(n);
    }
    hasher_.update(data, size);
    received_ += size;
    if (progress_) progress_(size);
    return true;
  }

  // A GET that broke off other than through the network: the sink refused (too much content, a
  // failed write) or something else local went wrong. The partial file is condemned.
  HubError stopped(const std::string& what) {
    return fail(content_error_ ? "E_HUB_INTEGRITY" : "E_IO",
                (write_error_.empty() ? what : write_error_) + " (GET " + meta_.download_url + ")");
  }

  // All bytes are in: fsync, and keep them only if their hash is the one the Hub announced.
  void finish(const std::string& etag) {
    if (fsync(fd_) != 0) throw fail("E_IO", "cannot fsync " + path_ + ": " + std::strerror(errno));
    const std::string actual = hasher_.hex();
    if (actual != etag)
      throw fail("E_HUB_INTEGRITY", std::string(etag.size() == 64 ? "sha256" : "git blob sha1") + " of the download is " +
                                        actual + " but the Hub says " + etag + "; the file was discarded (GET " +
                                        meta_.download_url + ")");
    close(fd_);
    fd_ = -1;
    done_ = true;
  }

 private:
  HubError fail(const std::string& code, const std::string& message) {
    discard_ = true;
    return HubError(code, message, 0, meta_.download_url);
  }

  const FileMetadata& meta_;
  const std::string& path_;
  const ProgressFn& progress_;
  ContentHasher hasher_;
  int fd_ = -1;
  uint64_t received_ = 0;
  bool discard_ = false, done_ = false;
  std::string write_error_;
  bool content_error_ = false;  // the server sent more than it announced
};

// Counts what section 5.2 allows: retries without progress, and 408/429 answers.
struct ResumeBudget {
  uint64_t failures_without_progress = 0;
  int status_retries = 0;
  // Another attempt that got from resumed_from to received; false: too many without progress.
  bool note_attempt(uint64_t resumed_from, uint64_t received) {
    failures_without_progress = received > resumed_from ? 0 : failures_without_progress + 1;
    return failures_without_progress <= kMaxFailuresWithoutProgress;
  }
};

// One GET from where the partial file ends, and what its ending means: the caller loops until
// the file is complete; throws when the download cannot go on.
void fetch_rest(HubClient& client, const FileMetadata& meta, PartialDownload& partial, ResumeBudget& budget) {
  HttpRequest request;
  request.url = meta.download_url;
  request.follow_redirects = true;
  request.headers = client.hub_headers();  // HubClient::perform keeps the token on the endpoint only
  const uint64_t resumed_from = partial.received();
  if (resumed_from > 0) request.headers.emplace_back("Range", "bytes=" + std::to_string(resumed_from) + "-");
  bool first_chunk = true;
  request.sink = [&](int status, const char* data, size_t size) {
    const bool first = first_chunk;
    first_chunk = false;
    return partial.write(first, status, data, size);
  };
  HttpResponse response;
  try {
    response = client.perform(request);
  } catch (const TransportError& e) {
    if (!budget.note_attempt(resumed_from, partial.received()))
      throw HubError("E_HUB_NETWORK", std::string(e.what()) + "; gave up after " +
                                          std::to_string(kMaxFailuresWithoutProgress) + " retries without progress",
                     0, meta.download_url);
    client.sleep(1);
    return;
  } catch (const HubError&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw partial.stopped(e.what());
  }
  if (response.status == 408 || response.status == 429) {
    if (++budget.status_retries > client.retry_policy().max_retries) throw error_from_response(request, response);
    client.sleep(client.backoff_seconds(budget.status_retries - 1, &response));
    return;
  }
  if (response.status >= 300) throw error_from_response(request, response);
  if (!partial.complete()) {
    // The answer ended early without a transport error: resume like a dropped connection.
    if (!budget.note_attempt(resumed_from, partial.received()))
      throw HubError("E_HUB_INTEGRITY", "got " + std::to_string(partial.received()) + " of " + std::to_string(meta.size) + " bytes",
                     response.status, meta.download_url);
    client.sleep(1);
  }
}

}  // namespace

void download_verified(HubClient& client, const FileMetadata& meta, const std::string& partial_path,
                       const ProgressFn& progress) {
  // Never a download whose content cannot be checked: the etag says which hash, and must be one.
  const std::string etag = checked_etag(meta.etag, "ETag", "GET " + meta.download_url);
  if (meta.size > kMaxDownloadBytes)
    refuse_value("size", std::to_string(meta.size), "larger than the " + std::to_string(kMaxDownloadBytes) + " bytes downloaded over HTTP",
                 "GET " + meta.download_url);
  PartialDownload partial(meta, partial_path, etag.size() == 64, progress);
  partial.resume_existing();
  ResumeBudget budget;
  while (!partial.complete()) fetch_rest(client, meta, partial, budget);
  partial.finish(etag);
}

namespace {

// A tree entry (from the Hub or from trees/<commit>.json) is used only when its path is a safe
// relative path and its ids are hashes: the ids name blobs before any HEAD is sent.
void check_repo_file(const RepoFile& file, const std::string& where) {
  check_relative_path(file.path, "tree entry path", where);
  const std::string of = " of \"" + escape_untrusted(file.path) + "\"";
  const auto is_hash = [](const std::string& s, size_t length) { return s.size() == length && is_lower_hex(s); };
  if (!is_hash(file.blob_id, 40)) refuse_value("tree entry oid" + of, file.blob_id, "must be 40 lower-case hex (git sha1)", where);
  if (file.lfs_sha256 && !is_hash(*file.lfs_sha256, 64))
    refuse_value("tree entry lfs.oid" + of, *file.lfs_sha256, "must be 64 lower-case hex (sha256)", where);
  if (file.size > kMaxDownloadBytes)
    refuse_value("tree entry size" + of, std::to_string(file.size),
                 "larger than the " + std::to_string(kMaxDownloadBytes) + " bytes downloaded over HTTP", where);
}

}  // namespace

std::vector<RepoFile> list_repo_files(HubClient& client, const RepoRef& repo, const std::string& commit) {
  std::vector<RepoFile> files;
  std::set<std::string> seen;
  std::string url = client.api_url(repo, "tree/" + percent_encode(commit, false)) + "?recursive=true&expand=false";
  for (int page = 0; page < kMaxTreePages; ++page) {
    HttpRequest request;
    request.url = url;
    request.headers = client.hub_headers();
    request.follow_redirects = true;
    const HttpResponse response = client.send(request, page > 0);  // the first page is not retried
    const auto entries = nlohmann::json::parse(response.body, nullptr, false);
    if (!entries.is_array()) throw HubError("E_HUB_PROTOCOL", "tree answer is not a JSON array (GET " + url + ")", response.status, url);
    for (const auto& entry : entries) {
      if (!entry.is_object() || entry.value("type", "") != "file") continue;
      RepoFile file;
      try {
        file.path = entry.at("path").get<std::string>();
        file.size = entry.at("size").get<uint64_t>();
        file.blob_id = entry.at("oid").get<std::string>();
        if (entry.contains("lfs") && entry["lfs"].is_object()) file.lfs_sha256 = entry["lfs"].at("oid").get<std::string>();
      } catch (const nlohmann::json::exception& e) {
        throw HubError("E_HUB_PROTOCOL", std::string("bad tree entry: ") + e.what() + " (GET " + url + ")", 0, url);
      }
      check_repo_file(file, "GET " + url);
      if (!seen.insert(file.path).second) refuse_value("tree entry path", file.path, "listed twice", "GET " + url);
      files.push_back(std::move(file));
    }
    auto next = next_link(response);
    if (!next) return files;
    // Pages come from the endpoint itself: a next link elsewhere would take our token there.
    const std::string next_url = resolve_location(url, *next);
    if (url_origin(next_url) != url_origin(client.config().endpoint))
      refuse_value("Link", *next, "the next page is not on the endpoint " + client.config().endpoint, "GET " + url);
    url = next_url;
  }
  throw HubError("E_HUB_PROTOCOL", "tree pagination did not end", 0, url);
}

namespace {

nlohmann::json tree_cache_json(const std::vector<RepoFile>& files) {
  nlohmann::json listed = nlohmann::json::object();
  for (const auto& f : files) {
    nlohmann::json entry{{"size", f.size}, {"blob_id", f.blob_id}};
    if (f.lfs_sha256) {
      entry["lfs_sha256"] = *f.lfs_sha256;
      entry["lfs_size"] = f.size;
    }
    listed[f.path] = entry;
  }
  return {{"format_version", 1}, {"files", listed}};
}

std::optional<std::vector<RepoFile>> read_tree_cache(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  const auto doc = nlohmann::json::parse(in, nullptr, false);
  if (!doc.is_object() || doc.value("format_version", 0) != 1 || !doc.contains("files") || !doc["files"].is_object())
    return std::nullopt;
  std::vector<RepoFile> files;
  try {
    for (const auto& [path_in_repo, entry] : doc["files"].items()) {
      RepoFile f;
      f.path = path_in_repo;
      f.size = entry.at("size").get<uint64_t>();
      f.blob_id = entry.at("blob_id").get<std::string>();
      if (entry.contains("lfs_sha256") && entry["lfs_sha256"].is_string()) f.lfs_sha256 = entry["lfs_sha256"].get<std::string>();
      check_repo_file(f, path);  // written by us or by Python, but from what a server said
      files.push_back(std::move(f));
    }
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return files;
}

bool is_present(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;  // follows the snapshot link: a dangling one is absent
}

void copy_file_to(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw HubError("E_IO", "cannot copy " + from + " to " + to + ": " + ec.message());
  int fd = open(to.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

void rename_into(const std::string& temp, const std::string& target) {
  make_dirs(fs::path(target).parent_path().string());
  if (rename(temp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    unlink(temp.c_str());
    throw HubError("E_IO", "cannot rename " + temp + " to " + target + ": " + std::strerror(err));
  }
  fsync_dir_of(target);
}

// One file of a snapshot into the cache; true when it was fetched.
bool fetch_into_cache(HubClient& client, const RepoRef& repo, const RepoCache& cache, const std::string& commit,
                      const RepoFile& file, const ProgressFn& progress) {
  if (is_present(cache.snapshot_path(commit, file.path))) return false;
  if (is_present(cache.blob_path(file.etag()))) {
    cache.link_snapshot(commit, file.path, file.etag());
    return false;
  }
  const FileMetadata meta = fetch_file_metadata(client, repo, commit, file.path);
  const std::string blob = cache.blob_path(meta.etag);
  make_dirs(fs::path(blob).parent_path().string());
  FileLock lock(cache.lock_path(meta.etag));
  bool fetched = false;
  if (!is_present(blob)) {
    const std::string partial = cache.blob_incomplete_path(meta.etag);
    download_verified(client, meta, partial, progress);
    rename_into(partial, blob);
    fetched = true;
  }
  cache.link_snapshot(commit, file.path, meta.etag);
  return fetched;
}

bool fetch_into_local_dir(HubClient& client, const RepoRef& repo, const RepoCache& cache, const LocalDirMetadata& local,
                          const std::string& commit, const RepoFile& file, const ProgressFn& progress) {
  if (local.is_current(file.path, file.etag(), file.size)) return false;
  const std::string target = local.file_path(file.path);
  make_dirs(fs::path(local.metadata_path(file.path)).parent_path().string());
  FileLock lock(local.lock_path(file.path));
  if (is_present(cache.blob_path(file.etag()))) {
    // The main cache already has it (a Python or an earlier download): copy, no request.
    const std::string partial = local.incomplete_path(file.path, file.etag());
    copy_file_to(cache.blob_path(file.etag()), partial);
    rename_into(partial, target);
    local.write(file.path, commit, file.etag());
    return false;
  }
  const FileMetadata meta = fetch_file_metadata(client, repo, commit, file.path);
  const std::string partial = local.incomplete_path(file.path, meta.etag);
  download_verified(client, meta, partial, progress);
  rename_into(partial, target);
  local.write(file.path, commit, meta.etag);
  return true;
}

}  // namespace

SnapshotResult snapshot_download(HubClient& client, const RepoRef& repo, const SnapshotOptions& options) {
  const RepoCache cache(options.cache_dir, repo);
  std::optional<LocalDirMetadata> local;
  if (options.local_dir) local.emplace(*options.local_dir);

  SnapshotResult result;
  // A branch name becomes refs/<REV> in the cache: a relative path like refs/pr/1, nothing more.
  if (!is_commit_sha(options.revision)) check_relative_path(options.revision, "revision", "");
  result.commit = is_commit_sha(options.revision) ? options.revision : client.revision_sha(repo, options.revision);
  const std::string tree_path = local ? local->tree_cache_path(result.commit) : cache.tree_cache_path(result.commit);

  // A commit never changes, so a cached listing of it replaces the tree call.
  auto cached_listing = read_tree_cache(tree_path);
  const bool listing_was_cached = cached_listing.has_value();
  std::vector<RepoFile> listing = listing_was_cached ? std::move(*cached_listing) : list_repo_files(client, repo, result.commit);

  std::vector<RepoFile> wanted;
  for (auto& f : listing)
    if (options.include.empty() || matches_any_glob(f.path, options.include)) wanted.push_back(f);

  // Every path this snapshot will write is checked before anything is created.
  for (const auto& f : wanted) {
    if (local) {
      local->file_path(f.path);
      local->incomplete_path(f.path, f.etag());
    } else {
      cache.snapshot_path(result.commit, f.path);
    }
  }

  cache.write_cachedir_tag();
  cache.write_ref(options.revision, result.commit);
  if (local) local->prepare();
  make_dirs(local ? *options.local_dir : cache.snapshot_dir(result.commit));

  if (options.on_total) {
    uint64_t total = 0;
    for (const auto& f : wanted) total += f.size;
    options.on_total(total);
  }

  result.files.resize(wanted.size());
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr first_error;
  auto worker = [&] {
    for (size_t i; (i = next++) < wanted.size();) {
      {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (first_error) return;
      }
      const RepoFile& file = wanted[i];
      try {
        const bool fetched = local ? fetch_into_local_dir(client, repo, cache, *local, result.commit, file, options.progress)
                                   : fetch_into_cache(client, repo, cache, result.commit, file, options.progress);
        result.files[i] = {file.path, file.size, file.etag(), fetched};
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  const int thread_count = std::max(1, std::min<int>(options.threads, static_cast<int>(wanted.size())));
  for (int t = 0; t < thread_count; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);

  // The listing is written only when complete and every file is present (Python's offline mode
  // then requires all of them).
  if (!listing_was_cached && options.include.empty()) write_file_atomic(tree_path, tree_cache_json(listing).dump(1));
  result.path = local ? *options.local_dir : cache.snapshot_dir(result.commit);
  return result;
}

}  // namespace sla::hub
