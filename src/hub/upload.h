// Uploads as one commit (hub-protocol.md section 3, legacy LFS path): preupload in chunks of 256,
// no-op detection against the remote oids, the LFS batch with basic and multipart transfers (parts
// in parallel, each read from its file range), the verify action, then one NDJSON commit with
// parentCommit. sha256 is computed once per file.
#pragma once

#include "hub_client.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sla::hub {

struct UploadItem {
  std::string path_in_repo;            // UTF-8, as the Hub's paths are (else std::invalid_argument, before any request)
  std::string local_path;              // read from disk, or
  std::optional<std::string> content;  // uploaded from memory (a generated model card)
};

struct CommitOptions {
  std::string revision = "main";
  std::string message = "Upload folder with sla-ckpt";
  std::string description;
  bool create_pr = false;
  bool create_repo = false;
  bool create_branch = false;  // a revision that is not yet a branch is created from the default branch
  bool private_repo = false;
  int threads = 5;
  std::function<void(uint64_t bytes)> progress;    // bytes of LFS content sent
  std::function<void(uint64_t bytes)> on_lfs_total;  // bytes that go through LFS, once known
  std::function<void(uint64_t bytes)> on_hash_total;  // bytes of LFS files to hash (sha256), once known
  std::function<void(uint64_t bytes)> hash_progress;  // bytes hashed so far (newly)
};

struct PlannedFile {
  std::string path_in_repo;
  uint64_t size = 0;
  std::string mode;  // regular | lfs | unknown
  bool unchanged = false;  // the remote oid equals ours: left out of the commit
  bool ignored = false;    // shouldIgnore (.gitignore): left out
};

struct CommitResult {
  std::string commit_oid;
  std::string commit_url;
  std::string pull_request_url;  // with create_pr
  std::string revision;          // the branch, or refs/pr/N
  bool no_op = false;            // nothing changed: no commit was made (and no pull request opened)
  bool branch_created = false;   // options.create_branch made the revision
  std::vector<PlannedFile> files;
};

// Asks the server how each file would be uploaded; writes nothing.
std::vector<PlannedFile> plan_upload(HubClient& client, const RepoRef& repo, const std::vector<UploadItem>& items,
                                     const CommitOptions& options);

CommitResult upload_commit(HubClient& client, const RepoRef& repo, const std::vector<UploadItem>& items,
                           const CommitOptions& options);

std::string base64_encode(const std::string& data);

}  // namespace sla::hub
