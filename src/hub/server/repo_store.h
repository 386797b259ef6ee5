// The server's storage, everything under one root folder:
//
//   ROOT/lock                            flock()ed by the one server that serves this root
//   ROOT/secret                          random key that signs LFS upload and blob URLs (0600)
//   ROOT/objects/<ab>/<sha256>           every file content, regular or LFS, named by its sha256
//   ROOT/uploads/<sha256>-<size>-<chunk>-<repo>/  a multipart upload in progress: data + part-<n>
//   ROOT/tmp/                            temp files (same file system, so renames are atomic) and
//                                        the inline files of commits being parsed
//   ROOT/repos/<models|datasets>/<ns>/<name>/
//        repo.json                       {"private", "created", "next_pr", "lfs_scoped"}
//        refs/heads/<branch>             the 40-hex head commit of a branch (no newline)
//        refs/pr/<N>                     the head of pull request N
//        commits/<id>.json               {"parents", "summary", "description", "created",
//                                         "tree": {path: {"sha256", "git_sha1", "size", "lfs"}}}
//        lfs/<sha256>                    empty marker: this LFS object was uploaded to this repo
//
// Contents are stored once, but LFS objects are scoped per repo as on the Hub: a commit may only
// name an LFS object uploaded to its own repo (knowing a sha256 is not enough). Repos from before
// the markers get them from their commits when the store opens ("lfs_scoped" in repo.json).
// Unfinished uploads and temp files are removed when the store opens (the lock says no other
// server is writing them) and, later, once idle for longer than the server's stale age.
//
// A commit id is the sha1 (git blob form) of its canonical JSON record without the id, so ids are
// 40 lowercase hex like the Hub's. Commits and objects are immutable; refs and repo.json are
// replaced atomically (temp + fsync + rename + folder fsync), and every mutation of repo state
// (create, commit, ref move) holds one mutex, so a restarted server sees exactly what was answered.
// For an LFS file, git_sha1 is the git blob id of its LFS pointer text, as on the Hub.
#pragma once

#include "file_util.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sla::hub::server {

struct RepoRef {
  std::string type_plural;  // "models" or "datasets"
  std::string ns;
  std::string name;

  std::string id() const { return ns + "/" + name; }
  // The web prefix of resolve and LFS URLs: "" for models, "datasets/" for datasets.
  std::string web_prefix() const { return type_plural == "models" ? "" : type_plural + "/"; }
};

struct FileEntry {
  std::string sha256;    // names the stored content
  std::string git_sha1;  // git blob id of the content (regular) or of the LFS pointer (LFS)
  uint64_t size = 0;     // size of the real content
  bool lfs = false;
};
using Tree = std::map<std::string, FileEntry>;

struct Commit {
  std::string id;
  std::vector<std::string> parents;
  std::string summary;
  std::string description;
  int64_t created_ns = 0;
  Tree tree;
};

// One change of a commit, with file contents already stored as objects.
struct CommitOperation {
  enum Kind { kAdd, kDeleteFile, kDeleteFolder } kind = kAdd;
  std::string path;
  FileEntry entry;          // kAdd only
  std::string staged_path;  // kAdd of inline content: its temp file, adopted when the commit lands
};

struct CommitRequest {
  std::string summary;
  std::string description;
  std::string parent_commit;  // empty: no check; else a 5..40 hex prefix the head must start with
  bool create_pr = false;
  std::vector<CommitOperation> operations;
};

struct CommitResult {
  std::string commit_id;
  int pr_number = 0;  // > 0 when create_pr made refs/pr/<N>
};

// The LFS pointer text git-lfs (and the Hub) store in git for an LFS file.
std::string lfs_pointer_text(const std::string& sha256, uint64_t size);

// Checks a path inside a repo (no empty, "." or ".." segments, no leading "/", not under .git);
// throws a 400 HttpError naming it.
void check_repo_path(const std::string& path);

class RepoStore {
 public:
  // Opens (creating) the root, takes its lock (throws when another process serves it), removes
  // what killed uploads left behind and adds the LFS markers of older repos.
  explicit RepoStore(std::string root);

  const std::string& root() const { return root_; }
  const std::string& secret() const { return secret_; }
  std::string temp_dir() const { return root_ + "/tmp"; }
  std::string uploads_dir() const { return root_ + "/uploads"; }

  // Creates the repo with a first commit (the default .gitattributes) on main; false if it exists.
  bool create_repo(const RepoRef& repo, bool is_private);
  bool repo_exists(const RepoRef& repo) const;
  // Throws a 404 RepoNotFound HttpError unless the repo exists.
  void require_repo(const RepoRef& repo) const;
  bool is_private(const RepoRef& repo) const;

  // A branch name, "refs/heads/<b>", "refs/pr/<N>" or a 40-hex commit id of this repo. Throws
  // 404 RepoNotFound or RevisionNotFound.
  std::shared_ptr<const Commit> resolve(const RepoRef& repo, const std::string& revision) const;

  // Applies the operations on top of the head of revision (a branch or PR ref) and moves it, or
  // with create_pr opens refs/pr/<N> from that head; staged inline files become objects only
  // once the commit is accepted. Throws HttpError (400, 404, 412) and then stores nothing.
  CommitResult commit(const RepoRef& repo, const std::string& revision, const CommitRequest& request);

  // Creates branch at the commit starting_point resolves to; false when the branch exists.
  // Throws a 400 HttpError for a name that is not a valid branch name.
  bool create_branch(const RepoRef& repo, const std::string& branch, const std::string& starting_point);

  // Creates tag at the commit revision resolves to; false when the tag exists. A 400 HttpError for
  // an invalid name.
  bool create_tag(const RepoRef& repo, const std::string& tag, const std::string& revision);
  // Removes a tag or a branch (not main); a 404 HttpError when it does not exist, 403 for main.
  void delete_tag(const RepoRef& repo, const std::string& tag);
  void delete_branch(const RepoRef& repo, const std::string& branch);

  struct Ref {
    std::string name;    // "main", "v1", "1" (a pull request's number)
    std::string commit;  // 40-hex target
  };
  struct Refs {
    std::vector<Ref> branches, tags, pull_requests;
  };
  Refs list_refs(const RepoRef& repo) const;

  // A commit of this repo by its full id; null when there is none.
  std::shared_ptr<const Commit> commit_by_id(const RepoRef& repo, const std::string& id) const {
    return load_commit(repo, id);
  }

  // Removes the repo (its refs, commits and LFS markers; shared objects stay); false if missing.
  bool delete_repo(const RepoRef& repo);
  void set_private(const RepoRef& repo, bool is_private);
  // The repos of one type ("models"/"datasets"), sorted by id.
  std::vector<RepoRef> list_repos(const std::string& type_plural) const;
  // Replaces the history of branch by one commit (no parent) with its head's files; returns its id.
  std::string super_squash(const RepoRef& repo, const std::string& branch, const std::string& message);

  // Content storage by sha256.
  std::string object_path(const std::string& sha256) const;
  // Size of the stored object, or -1 when it is not stored.
  int64_t object_size(const std::string& sha256) const;
  // Stores bytes and returns their entry (regular file).
  FileEntry store_regular_content(const std::string& data);
  // Writes bytes (an inline commit file) to a temp file; returns their entry and sets temp_path.
  // commit() adopts it; whoever stages removes it when the commit is refused.
  FileEntry stage_regular_content(const std::string& data, std::string& temp_path) const;
  // Moves a fully written, fsynced temp file whose sha256 was checked into the object store.
  void adopt_object(const std::string& temp_path, const std::string& sha256);
  // adopt_object, then records that the object was uploaded to repo.
  void adopt_lfs_object(const RepoRef& repo, const std::string& temp_path, const std::string& sha256);
  // Size of the LFS object if it was uploaded to repo, else -1.
  int64_t lfs_object_size(const RepoRef& repo, const std::string& sha256) const;

  // Removes temp files and unfinished uploads idle for at least max_age_seconds; returns how many.
  size_t remove_stale_uploads(int64_t max_age_seconds);

 private:
  // refs/<folder>/<name> (folder "heads" or "tags") at the commit revision resolves to; kind names
  // it in the error. false when it exists.
  bool create_ref(const RepoRef& repo, const std::string& folder, const std::string& kind, const std::string& name,
                  const std::string& revision);
  std::string repo_dir(const RepoRef& repo) const;
  std::string ref_path(const RepoRef& repo, const std::string& revision) const;
  std::string tag_path(const RepoRef& repo, const std::string& revision) const;
  // The one commit whose id starts with a 4..39 hex prefix; null when none or several.
  std::shared_ptr<const Commit> commit_by_prefix(const RepoRef& repo, const std::string& prefix) const;
  std::shared_ptr<const Commit> load_commit(const RepoRef& repo, const std::string& id) const;
  std::string write_commit(const RepoRef& repo, Commit commit);
  std::string lfs_marker(const RepoRef& repo, const std::string& sha256) const;
  void scope_lfs_objects_of_older_repos();

  std::string root_;
  Fd lock_;
  std::string secret_;
  std::mutex state_mutex_;  // create_repo, commit, ref moves
  mutable std::mutex cache_mutex_;
  mutable std::map<std::string, std::shared_ptr<const Commit>> commit_cache_;  // key: commit file path; bounded
};

}  // namespace sla::hub::server
