// The Hugging Face cache on disk (hub-protocol.md section 7), byte for byte as the Python client
// writes it, so each client reuses the other's downloads:
//   <cache>/CACHEDIR.TAG, <cache>/.locks/<folder>/<etag>.lock,
//   <cache>/<folder>/{blobs/<etag>, refs/<REV> (no newline), snapshots/<commit>/<path> -> ../../blobs/<etag>,
//                     trees/<commit>.json}
// and, for --local-dir, <dir>/.cache/huggingface/{.gitignore, CACHEDIR.TAG, download/<path>.metadata}.
// Every path below is built through confined_path (untrusted.h): the parts that come from a server
// (etag, commit, file path) or the user (revision) cannot leave the repo folder or the local dir,
// not even through a symlink already there; a bad part throws HubError E_HUB_UNSAFE.
#pragma once

#include "hub_client.h"

#include <cstdint>
#include <optional>
#include <string>

namespace sla::hub {

// HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub
std::string hub_cache_dir(const EnvLookup& env);

// "models--ns--name" / "datasets--ns--name"
std::string repo_folder_name(const RepoRef& repo);

class RepoCache {
 public:
  RepoCache(std::string cache_dir, const RepoRef& repo);

  const std::string& root() const { return cache_dir_; }
  std::string repo_dir() const { return repo_dir_; }
  std::string blob_path(const std::string& etag) const;
  std::string snapshot_dir(const std::string& commit) const;
  std::string snapshot_path(const std::string& commit, const std::string& path) const;
  std::string tree_cache_path(const std::string& commit) const;
  std::string lock_path(const std::string& etag) const;
  // The partial download beside the blob, blobs/<etag>.incomplete: one name per blob (written
  // under lock_path), so an interrupted pull is resumed by the next one, never left as an orphan.
  std::string blob_incomplete_path(const std::string& etag) const;

  void write_cachedir_tag() const;
  void write_ref(const std::string& revision, const std::string& commit) const;  // atomic, no newline
  std::optional<std::string> read_ref(const std::string& revision) const;
  // snapshots/<commit>/<path> -> relative link to blobs/<etag> (replaced atomically when present).
  void link_snapshot(const std::string& commit, const std::string& path, const std::string& etag) const;

 private:
  std::string cache_dir_;
  std::string folder_;
  std::string repo_dir_;
};

// <dir>/.cache/huggingface/... for local-dir downloads.
class LocalDirMetadata {
 public:
  explicit LocalDirMetadata(std::string local_dir);
  void prepare() const;  // .gitignore "*" and CACHEDIR.TAG
  std::string file_path(const std::string& path) const;  // <dir>/<path>; not under .cache/huggingface
  std::string metadata_path(const std::string& path) const;
  std::string lock_path(const std::string& path) const;  // download/<path>.lock, as Python names it
  // The partial download of path at etag, beside its metadata: <16 hex of sha256(name)>.<etag>.incomplete
  // (short whatever the name's length; one name per file and etag, written under lock_path).
  std::string incomplete_path(const std::string& path, const std::string& etag) const;
  std::string tree_cache_path(const std::string& commit) const;
  // The file is up to date when its metadata names this etag and it was not modified after.
  bool is_current(const std::string& path, const std::string& etag, uint64_t size) const;
  // "<commit>\n<etag>\n<unix time float>\n", written after the file so the mtime check holds.
  void write(const std::string& path, const std::string& commit, const std::string& etag) const;

 private:
  std::string dir_;
};

// Small durable-file helpers shared by the cache and the downloads.
void make_dirs(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& content);  // temp, fsync, rename
void fsync_dir_of(const std::string& path);

// An advisory flock(), like Python's filelock; released by the destructor.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace sla::hub
