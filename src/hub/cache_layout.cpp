#include "cache_layout.h"

#include "sla/checkpoint/durable_file.h"
#include "sla/checkpoint/errors.h"
#include "sla/hub/common/hashing.h"
#include "untrusted.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace sla::hub {
namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw HubError("E_IO", what + " " + path + ": " + std::strerror(errno));
}

int depth_of(const std::string& path) {
  int depth = 0;
  for (char c : path) depth += c == '/';
  return depth;
}

}  // namespace

std::string hub_cache_dir(const EnvLookup& env) {
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}) {
    auto value = env(name);
    if (value && !value->empty()) return value->rfind("~", 0) == 0 ? env("HOME").value_or("") + value->substr(1) : *value;
  }
  return hf_home(env) + "/hub";
}

std::string repo_folder_name(const RepoRef& repo) {
  std::string name = repo.plural() + "--" + repo.id;
  std::string out;
  for (char c : name) out += c == '/' ? std::string("--") : std::string(1, c);
  return out;
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw HubError("E_IO", "cannot create folder " + path + ": " + ec.message());
}

void fsync_dir_of(const std::string& path) {
  const std::string dir = fs::path(path).parent_path().string();
  int fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

// Through the checkpoint library's durable write (temp beside the target, fsync, rename, fsync of
// the folder); its failures become the cache's I/O errors.
void write_file_atomic(const std::string& path, const std::string& content) {
  make_dirs(fs::path(path).parent_path().string());
  try {
    sla::checkpoint::write_file_durably(path, reinterpret_cast<const uint8_t*>(content.data()), content.size(),
                                [](const std::string&) {});
  } catch (const sla::checkpoint::CheckpointError& e) {
    throw HubError("E_IO", e.what(), 0, path);
  }
}

FileLock::FileLock(const std::string& path) {
  make_dirs(fs::path(path).parent_path().string());
  fd_ = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0664);
  if (fd_ < 0) io_error("cannot open lock", path);
  while (flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      close(fd_);
      io_error("cannot lock", path);
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) {
    flock(fd_, LOCK_UN);
    close(fd_);
  }
}

RepoCache::RepoCache(std::string cache_dir, const RepoRef& repo)
    : cache_dir_(std::move(cache_dir)), folder_(repo_folder_name(repo)), repo_dir_(cache_dir_ + "/" + folder_) {}

std::string RepoCache::blob_path(const std::string& etag) const { return confined_path(repo_dir_, "blobs/" + etag); }
std::string RepoCache::snapshot_dir(const std::string& commit) const { return confined_path(repo_dir_, "snapshots/" + commit); }
std::string RepoCache::snapshot_path(const std::string& commit, const std::string& path) const {
  return confined_path(repo_dir_, "snapshots/" + commit + "/" + path);
}
std::string RepoCache::tree_cache_path(const std::string& commit) const {
  return confined_path(repo_dir_, "trees/" + commit + ".json");
}
std::string RepoCache::lock_path(const std::string& etag) const {
  return confined_path(cache_dir_, ".locks/" + folder_ + "/" + etag + ".lock");
}
std::string RepoCache::blob_incomplete_path(const std::string& etag) const {
  return confined_path(repo_dir_, "blobs/" + etag + ".incomplete");
}

void RepoCache::write_cachedir_tag() const {
  const std::string path = cache_dir_ + "/CACHEDIR.TAG";
  if (fs::exists(path)) return;
  write_file_atomic(path,
                    "Signature: 8a477f597d28d172789f06886806bc55\n"
                    "# This file is a cache directory tag created by huggingface_hub.\n"
                    "# For information about cache directory tags, see:\n"
                    "#\thttps://bford.info/cachedir/\n");
}

void RepoCache::write_ref(const std::string& revision, const std::string& commit) const {
  if (revision == commit) return;  // a commit REV gets no ref
  const std::string path = confined_path(repo_dir_, "refs/" + revision);
  if (read_ref(revision) == commit) return;
  write_file_atomic(path, commit);
}

std::optional<std::string> RepoCache::read_ref(const std::string& revision) const {
  std::ifstream in(confined_path(repo_dir_, "refs/" + revision), std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void RepoCache::link_snapshot(const std::string& commit, const std::string& path, const std::string& etag) const {
  const std::string link = snapshot_path(commit, path);
  blob_path(etag);  // the link target, checked like every path
  make_dirs(fs::path(link).parent_path().string());
  // snapshots/<commit>/<path> is 2 + depth(path) levels below the repo folder.
  std::string target;
  for (int i = 0; i < 2 + depth_of(path); ++i) target += "../";
  target += "blobs/" + etag;
  const std::string temp = sla::checkpoint::durable_temp_path(link);
  if (symlink(target.c_str(), temp.c_str()) != 0) io_error("cannot create symlink", temp);
  if (rename(temp.c_str(), link.c_str()) != 0) {
    unlink(temp.c_str());
    io_error("cannot rename symlink into", link);
  }
}

LocalDirMetadata::LocalDirMetadata(std::string local_dir) : dir_(std::move(local_dir)) {}

void LocalDirMetadata::prepare() const {
  const std::string base = dir_ + "/.cache/huggingface";
  make_dirs(base);
  if (!fs::exists(base + "/.gitignore")) write_file_atomic(base + "/.gitignore", "*");
  if (!fs::exists(base + "/CACHEDIR.TAG"))
    write_file_atomic(base + "/CACHEDIR.TAG",
                      "Signature: 8a477f597d28d172789f06886806bc55\n"
                      "# This file is a cache directory tag created by huggingface_hub.\n");
}

std::string LocalDirMetadata::file_path(const std::string& path) const {
  if (path == ".cache/huggingface" || path.rfind(".cache/huggingface/", 0) == 0)
    refuse_value("path", path, "reserved for the download metadata of the local dir", dir_);
  return confined_path(dir_, path);
}
std::string LocalDirMetadata::metadata_path(const std::string& path) const {
  return confined_path(dir_, ".cache/huggingface/download/" + path + ".metadata");
}
std::string LocalDirMetadata::lock_path(const std::string& path) const {
  return confined_path(dir_, ".cache/huggingface/download/" + path + ".lock");
}
std::string LocalDirMetadata::incomplete_path(const std::string& path, const std::string& etag) const {
  const std::string name = sha256_hex(fs::path(path).filename().string()).substr(0, 16) + "." + etag + ".incomplete";
  const std::string relative = fs::path(".cache/huggingface/download/" + path).parent_path().string() + "/" + name;
  return confined_path(dir_, relative);
}
std::string LocalDirMetadata::tree_cache_path(const std::string& commit) const {
  return confined_path(dir_, ".cache/huggingface/trees/" + commit + ".json");
}

bool LocalDirMetadata::is_current(const std::string& path, const std::string& etag, uint64_t size) const {
  std::ifstream in(metadata_path(path));
  std::string commit, meta_etag, timestamp;
  if (!in || !std::getline(in, commit) || !std::getline(in, meta_etag) || !std::getline(in, timestamp)) return false;
  struct stat st {};
  if (stat(file_path(path).c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) return false;
  double written = 0;
  try {
    written = std::stod(timestamp);
  } catch (const std::exception&) {
    return false;
  }
  const double mtime = static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9;
  return meta_etag == etag && mtime <= written + 1;
}

void LocalDirMetadata::write(const std::string& path, const std::string& commit, const std::string& etag) const {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%.6f", now);
  write_file_atomic(metadata_path(path), commit + "\n" + etag + "\n" + stamp + "\n");
}

}  // namespace sla::hub
