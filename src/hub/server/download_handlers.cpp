// Downloads: HEAD/GET resolve/{REV}/{path} and the signed blob URL that LFS files redirect to.
// Content is streamed from the object file (pread, 1 MiB at a time), with single byte ranges
// answered 206, and the test faults of faults.h applied to GETs.
#include "call.h"
#include "file_util.h"
#include "http_error.h"
#include "url_codec.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <regex>

namespace sla::hub::server {
namespace {

constexpr size_t kReadBlock = 1 << 20;

// The blob URL names the object and the commit it was resolved at; the signature covers both.
std::string blob_signature(const ServerContext& ctx, const std::string& sha256, const std::string& commit) {
  return hmac_hex(ctx.store.secret(), "blob " + sha256 + " " + commit);
}

// The LFS identity a HEAD reports, on the resolve redirect and again on the blob URL (with the
// commit): clients from huggingface_hub 2 on follow a redirect that stays on the same origin and
// read the file's metadata from the last response.
void set_lfs_identity(Call& call, const std::string& sha256, uint64_t size) {
  call.res.set_header("X-Linked-Etag", "\"" + sha256 + "\"");
  call.res.set_header("X-Linked-Size", std::to_string(size));
}

struct ByteRange {
  uint64_t first = 0;
  uint64_t length = 0;
};

// One "bytes=a-b", "bytes=a-" or "bytes=-n" range. Nothing for a missing, malformed or multi-range
// header (then the whole body is sent, which RFC 9110 allows); a 416 HttpError when unsatisfiable.
std::optional<ByteRange> requested_range(const httplib::Request& req, uint64_t size, httplib::Response& res) {
  static const std::regex single(R"(bytes=(\d{0,19})-(\d{0,19}))");
  std::smatch m;
  std::string header = req.get_header_value("Range");
  if (!std::regex_match(header, m, single) || (m[1].length() == 0 && m[2].length() == 0)) return std::nullopt;
  uint64_t first, last;
  if (m[1].length() == 0) {  // suffix: the last n bytes
    uint64_t n = std::stoull(m[2].str());
    if (n == 0 || size == 0) {
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      throw HttpError(416, "", "range " + header + " is not satisfiable for " + std::to_string(size) + " bytes");
    }
    first = size - std::min(n, size);
    last = size - 1;
  } else {
    first = std::stoull(m[1].str());
    last = m[2].length() ? std::stoull(m[2].str()) : size - 1;
    if (first >= size || last < first) {
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      throw HttpError(416, "", "range " + header + " is not satisfiable for " + std::to_string(size) + " bytes");
    }
    last = std::min(last, size - 1);
  }
  return ByteRange{first, last - first + 1};
}

struct OpenObject {
  Fd fd;
  std::vector<char> buffer;
};

// Streams object bytes [first, first + length) as the response body. The faults: `cut_after`
// stops the body there and closes the connection; `corrupt` flips the first byte of every block.
void serve_object(ServerContext& ctx, Call& call, const std::string& sha256, uint64_t size,
                  const std::string& repo_path) {
  std::optional<Fault> fault = call.is_head() ? std::nullopt : ctx.faults.take(repo_path);
  if (fault && fault->kind == Fault::kStatus) {
    if (fault->code == 429 || fault->code == 503) call.res.set_header("Retry-After", std::to_string(fault->retry_after));
    throw HttpError(fault->code, "", "injected fault: status " + std::to_string(fault->code) + " for " + repo_path);
  }
  call.res.set_header("Accept-Ranges", "bytes");
  std::optional<ByteRange> range;
  if (!(fault && fault->kind == Fault::kIgnoreRange)) range = requested_range(call.req, size, call.res);
  ByteRange body = range ? *range : ByteRange{0, size};
  call.res.status = range ? 206 : 200;
  if (range) {
    call.res.set_header("Content-Range", "bytes " + std::to_string(body.first) + "-" +
                                             std::to_string(body.first + body.length - 1) + "/" + std::to_string(size));
  }
  // Content-Length is set by hand and the provider has no length, so a fault can end the body
  // short of what the header promised.
  call.res.set_header("Content-Length", std::to_string(body.length));
  if (call.is_head()) return;

  auto object = std::make_shared<OpenObject>();
  object->fd = Fd(::open(ctx.store.object_path(sha256).c_str(), O_RDONLY | O_CLOEXEC));
  if (object->fd.get() < 0) throw std::runtime_error("stored object " + sha256 + " is missing");
  object->buffer.resize(kReadBlock);
  uint64_t cut_after = body.length;
  if (fault && fault->kind == Fault::kDrop) cut_after = std::min(body.length, fault->after.value_or(1ull << 20));
  if (fault && fault->kind == Fault::kTruncate) cut_after = std::min(body.length, fault->after.value_or(body.length / 2));
  bool corrupt = fault && fault->kind == Fault::kCorrupt;
  bool cut = cut_after < body.length;
  call.res.set_content_provider(
      "application/octet-stream", [object, body, cut_after, cut, corrupt](size_t offset, httplib::DataSink& sink) {
        if (offset >= cut_after) {
          if (cut) return false;  // closes the connection with the body short of Content-Length
          sink.done();
          return true;
        }
        size_t n = static_cast<size_t>(std::min<uint64_t>(kReadBlock, cut_after - offset));
        ssize_t got = ::pread(object->fd.get(), object->buffer.data(), n, static_cast<off_t>(body.first + offset));
        if (got <= 0) return false;
        if (corrupt) object->buffer[0] = static_cast<char>(~object->buffer[0]);
        return sink.write(object->buffer.data(), static_cast<size_t>(got));
      });
}

}  // namespace

void handle_resolve(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision,
                    const std::string& path) {
  auto commit = ctx.store.resolve(repo, revision);
  call.res.set_header("X-Repo-Commit", commit->id);
  auto it = commit->tree.find(path);
  if (it == commit->tree.end()) {
    throw HttpError(404, "EntryNotFound", path + " does not exist in " + repo.id() + " at " + revision);
  }
  const FileEntry& entry = it->second;
  if (entry.lfs) {
    // Like the Hub's CDN redirect: an absolute URL, with the LFS identity in X-Linked-*.
    call.res.status = 302;
    call.res.set_header("Location", call.base_url + "/_blob/" + entry.sha256 + "/" + encode_path(path) +
                                        "?commit=" + commit->id + "&sig=" + blob_signature(ctx, entry.sha256, commit->id));
    call.res.set_header("ETag", "\"" + entry.git_sha1 + "\"");
    set_lfs_identity(call, entry.sha256, entry.size);
    return;
  }
  call.res.set_header("ETag", "\"" + entry.git_sha1 + "\"");
  serve_object(ctx, call, entry.sha256, entry.size, path);
}

void handle_blob(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  const std::string& m = call.req.method;
  if (s.size() < 3 || !is_sha256_hex(s[1]) || (m != "GET" && m != "HEAD")) throw HttpError(404, "", "unknown blob URL");
  const std::string& sha256 = s[1];
  const std::string commit = call.req.get_param_value("commit");
  if (!equal_constant_time(call.req.get_param_value("sig"), blob_signature(ctx, sha256, commit))) {
    throw HttpError(403, "", "blob URL signature does not match (blob URLs come from resolve)");
  }
  int64_t size = ctx.store.object_size(sha256);
  if (size < 0) throw HttpError(404, "", "blob " + sha256 + " is not stored");
  call.res.set_header("X-Repo-Commit", commit);
  call.res.set_header("ETag", "\"" + sha256 + "\"");
  set_lfs_identity(call, sha256, static_cast<uint64_t>(size));
  serve_object(ctx, call, sha256, static_cast<uint64_t>(size), join_segments(s, 2));
}

}  // namespace sla::hub::server
