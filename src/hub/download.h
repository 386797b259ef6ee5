// Downloads (hub-protocol.md section 5, checkpoint-safety.md section 5): the metadata HEAD, a GET
// that resumes with Range and restarts when the Range is ignored, a size and content-hash check
// before anything is used, and snapshots into the cache or a local folder (cache_layout.h).
#pragma once

#include "cache_layout.h"
#include "hub_client.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sla::hub {

struct FileMetadata {
  std::string commit;        // X-Repo-Commit
  std::string etag;          // X-Linked-Etag, else ETag; W/ and quotes stripped
  uint64_t size = 0;         // X-Linked-Size, else Content-Length (not on a 3xx)
  std::string download_url;  // the absolute redirect target, else the resolve URL
};

// HEAD resolve/{REV}/{path} without following redirects; relative redirects are re-HEADed (at most
// kMaxRedirects). X-Repo-Commit, the ETag and the Location are checked (untrusted.h).
FileMetadata fetch_file_metadata(HubClient& client, const RepoRef& repo, const std::string& revision,
                                 const std::string& path);

using ProgressFn = std::function<void(uint64_t bytes)>;  // called with newly received bytes

// Streams `meta.download_url` into partial_path, continuing from the bytes already there (an
// interrupted earlier pull; they are hashed first) with Range, resuming on dropped connections,
// then checks size and hash: sha256 for a 64-hex etag, git blob sha1 for a 40-hex one, and any
// other etag is refused (E_HUB_UNSAFE) before a byte is fetched. On a network or HTTP failure the
// partial file stays for the next attempt; content proven wrong (E_HUB_INTEGRITY) or an I/O error
// removes it. The caller holds the lock that makes partial_path its own.
void download_verified(HubClient& client, const FileMetadata& meta, const std::string& partial_path,
                       const ProgressFn& progress = {});

struct RepoFile {
  std::string path;
  uint64_t size = 0;
  std::string blob_id;                    // git blob sha1 (of the pointer, for LFS files)
  std::optional<std::string> lfs_sha256;  // LFS files only
  std::string etag() const { return lfs_sha256 ? *lfs_sha256 : blob_id; }
};

// The recursive tree at a commit, every page (Link rel="next", on the endpoint only). Each file's
// path and ids are checked (untrusted.h); a path listed twice is refused.
std::vector<RepoFile> list_repo_files(HubClient& client, const RepoRef& repo, const std::string& commit);

struct SnapshotOptions {
  std::string revision = "main";
  std::string cache_dir;                  // the hub cache (cache mode and for refs)
  std::optional<std::string> local_dir;   // download into this folder instead of snapshots/
  std::vector<std::string> include;       // fnmatch globs; empty = everything
  int threads = 8;
  ProgressFn progress;
  std::function<void(uint64_t total_bytes)> on_total;  // bytes that will be fetched, once known
};

struct SnapshotFile {
  std::string path;
  uint64_t size = 0;
  std::string etag;
  bool downloaded = false;  // false: reused from the cache or the local folder
};

struct SnapshotResult {
  std::string commit;
  std::string path;  // snapshots/<commit> or the local folder
  std::vector<SnapshotFile> files;
};

SnapshotResult snapshot_download(HubClient& client, const RepoRef& repo, const SnapshotOptions& options);

bool matches_any_glob(const std::string& path, const std::vector<std::string>& globs);  // fnmatch, '*' crosses '/'

}  // namespace sla::hub
