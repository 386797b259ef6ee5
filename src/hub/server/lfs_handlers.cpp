// LFS: the batch call, the upload targets it hands out (basic PUT, multipart part PUTs and the
// completion POST) and the verify call. Upload targets get no authorization header from the
// client, so each URL carries an HMAC of (oid, size[, chunk]) under the server's secret instead.
// Every body is streamed to disk and its sha256 and size checked before it becomes an object.
#include "call.h"
#include "file_util.h"
#include "hashing.h"
#include "http_error.h"
#include "url_codec.h"

#include <fcntl.h>
#include <unistd.h>

#include <mutex>

namespace slahub::server {
namespace {

using nlohmann::json;

constexpr size_t kBatchBodyLimit = 64ull << 20;
const char* kLfsContentType = "application/vnd.git-lfs+json";

std::mutex completion_mutex;  // one multipart assembly at a time per server

std::string basic_signature(const ServerContext& ctx, const std::string& oid, uint64_t size) {
  return hmac_hex(ctx.store.secret(), "put " + oid + " " + std::to_string(size));
}

std::string multipart_signature(const ServerContext& ctx, const std::string& oid, uint64_t size, uint64_t chunk) {
  return hmac_hex(ctx.store.secret(), "multipart " + oid + " " + std::to_string(size) + " " + std::to_string(chunk));
}

uint64_t query_number(const Call& call, const char* name) {
  std::string text = call.req.get_param_value(name);
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) {
    throw bad_request(std::string("upload URL: missing or invalid ") + name);
  }
  return std::stoull(text);
}

void check_signature(const Call& call, const std::string& expected) {
  if (!equal_constant_time(call.req.get_param_value("sig"), expected)) {
    throw HttpError(403, "", "upload URL signature does not match (URLs come from the LFS batch call)");
  }
}

uint64_t part_count(uint64_t size, uint64_t chunk) { return (size + chunk - 1) / chunk; }

std::string upload_dir(const ServerContext& ctx, const std::string& oid, uint64_t size, uint64_t chunk) {
  return ctx.store.uploads_dir() + "/" + oid + "-" + std::to_string(size) + "-" + std::to_string(chunk);
}

json upload_actions(const ServerContext& ctx, const Call& call, const RepoRef& repo, const std::string& oid,
                    uint64_t size) {
  std::string lfs = call.base_url + "/_lfs/" + oid;
  json upload;
  if (size <= ctx.options.multipart_threshold) {
    upload = {{"href", lfs + "?size=" + std::to_string(size) + "&sig=" + basic_signature(ctx, oid, size)}};
  } else {
    uint64_t chunk = ctx.options.multipart_chunk;
    std::string query = "?size=" + std::to_string(size) + "&chunk=" + std::to_string(chunk) +
                        "&sig=" + multipart_signature(ctx, oid, size, chunk);
    json header = {{"chunk_size", std::to_string(chunk)}};
    for (uint64_t n = 1; n <= part_count(size, chunk); ++n) {
      header[std::to_string(n)] = lfs + "/part/" + std::to_string(n) + query;
    }
    upload = {{"href", lfs + "/complete" + query}, {"header", header}};
  }
  std::string verify = call.base_url + "/" + repo.web_prefix() + repo.id() + ".git/info/lfs/objects/verify";
  return {{"upload", upload}, {"verify", {{"href", verify}}}};
}

// Checks what was received against the oid and size the URL was signed for.
void check_received(const std::string& oid, uint64_t size, const std::string& sha256, uint64_t received) {
  if (received != size) {
    throw bad_request("LFS upload of " + oid + ": received " + std::to_string(received) + " bytes, expected " +
                      std::to_string(size));
  }
  if (sha256 != oid) throw bad_request("LFS upload: the body's sha256 is " + sha256 + ", not the oid " + oid);
}

void put_basic(ServerContext& ctx, Call& call, const std::string& oid) {
  uint64_t size = query_number(call, "size");
  check_signature(call, basic_signature(ctx, oid, size));
  std::string temp;
  Fd fd = open_temp_file(ctx.store.temp_dir(), temp);
  try {
    ContentHasher sha(ContentHasher::Kind::kSha256, size);
    BufferedFileWriter writer(fd.get(), 0);
    uint64_t written = 0;
    uint64_t received = call.stream_body([&](const char* data, size_t n) {
      if (written + n > size) throw bad_request("LFS upload of " + oid + ": body longer than " + std::to_string(size));
      sha.update(data, n);
      writer.append(data, n);
      written += n;
    });
    writer.flush();
    check_received(oid, size, sha.hex(), received);
    sync_fd(fd.get(), temp);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  ctx.store.adopt_object(temp, oid);
  call.reply_json(200, json::object());
}

void put_part(ServerContext& ctx, Call& call, const std::string& oid, const std::string& part_text) {
  uint64_t size = query_number(call, "size");
  uint64_t chunk = query_number(call, "chunk");
  check_signature(call, multipart_signature(ctx, oid, size, chunk));
  uint64_t parts = part_count(size, chunk);
  if (part_text.empty() || part_text.size() > 9 || part_text.find_first_not_of("0123456789") != std::string::npos) {
    throw bad_request("invalid part number '" + part_text + "'");
  }
  uint64_t part = std::stoull(part_text);
  if (part < 1 || part > parts) throw bad_request("part " + part_text + " is outside 1.." + std::to_string(parts));
  uint64_t offset = (part - 1) * chunk;
  uint64_t expected = std::min(chunk, size - offset);

  std::string dir = upload_dir(ctx, oid, size, chunk);
  make_dirs(dir);
  Fd fd(::open((dir + "/data").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw std::runtime_error("cannot open " + dir + "/data");
  const uint64_t end = offset + expected;
  BufferedFileWriter writer(fd.get(), offset);
  uint64_t received = call.stream_body([&](const char* data, size_t n) {
    if (offset + n > end) throw bad_request("part " + part_text + " of " + oid + ": body longer than " + std::to_string(expected));
    writer.append(data, n);
    offset += n;
  });
  writer.flush();
  if (received != expected) {
    throw bad_request("part " + part_text + " of " + oid + ": received " + std::to_string(received) +
                      " bytes, expected " + std::to_string(expected));
  }
  sync_fd(fd.get(), dir + "/data");
  std::string etag = "\"" + random_hex(16) + "\"";
  write_file_atomic(dir + "/part-" + std::to_string(part), etag);
  call.res.set_header("ETag", etag);
  call.reply_json(200, json::object());
}

void complete_multipart(ServerContext& ctx, Call& call, const std::string& oid) {
  uint64_t size = query_number(call, "size");
  uint64_t chunk = query_number(call, "chunk");
  check_signature(call, multipart_signature(ctx, oid, size, chunk));
  json body = call.read_json_object(kBatchBodyLimit);
  std::string dir = upload_dir(ctx, oid, size, chunk);
  uint64_t parts = part_count(size, chunk);
  if (!body.contains("parts") || !body["parts"].is_array() || body["parts"].size() != parts) {
    throw bad_request("multipart completion of " + oid + " must list " + std::to_string(parts) + " parts");
  }
  for (const auto& p : body["parts"]) {
    if (!p.is_object() || !p.contains("partNumber") || !p["partNumber"].is_number_integer() || !p.contains("etag") ||
        !p["etag"].is_string()) {
      throw bad_request("multipart completion: every part needs partNumber and etag");
    }
    int64_t n = p["partNumber"].get<int64_t>();
    std::string marker = dir + "/part-" + std::to_string(n);
    if (n < 1 || static_cast<uint64_t>(n) > parts || !file_exists(marker) || read_file(marker) != p["etag"].get<std::string>()) {
      throw bad_request("multipart completion of " + oid + ": part " + std::to_string(n) +
                        " was not uploaded or its etag does not match");
    }
  }
  std::lock_guard<std::mutex> lock(completion_mutex);
  if (ctx.store.object_size(oid) != static_cast<int64_t>(size)) {
    std::string data = dir + "/data";
    int64_t have = file_size_or_missing(data);
    check_received(oid, size, sha256_of_file(data), have < 0 ? 0 : static_cast<uint64_t>(have));
    ctx.store.adopt_object(data, oid);
  }
  for (uint64_t n = 1; n <= parts; ++n) ::unlink((dir + "/part-" + std::to_string(n)).c_str());
  ::unlink((dir + "/data").c_str());
  ::rmdir(dir.c_str());
  call.reply_json(200, json::object());
}

}  // namespace

void handle_lfs_batch(ServerContext& ctx, Call& call, const RepoRef& repo) {
  ctx.store.require_repo(repo);
  json body = call.read_json_object(kBatchBodyLimit);
  std::string operation = body.value("operation", "");
  if (operation != "upload") throw bad_request("LFS batch: only the \"upload\" operation is supported");
  if (!body.contains("objects") || !body["objects"].is_array()) throw bad_request("LFS batch: missing \"objects\"");
  json objects = json::array();
  for (const auto& object : body["objects"]) {
    json oid = object.is_object() ? object.value("oid", json()) : json();
    json size = object.is_object() ? object.value("size", json()) : json();
    json answer = {{"oid", oid}, {"size", size}};
    if (!oid.is_string() || !is_sha256_hex(oid.get<std::string>()) || !size.is_number_integer() || size.get<int64_t>() < 0) {
      answer["error"] = {{"code", 422}, {"message", "oid must be 64 lowercase hex and size a non-negative integer"}};
    } else {
      int64_t stored = ctx.store.object_size(oid.get<std::string>());
      if (stored == size.get<int64_t>()) {
        // Already stored: no actions, nothing to upload.
      } else if (stored >= 0) {
        answer["error"] = {{"code", 422}, {"message", "object " + oid.get<std::string>() + " is stored with size " + std::to_string(stored)}};
      } else {
        answer["actions"] = upload_actions(ctx, call, repo, oid.get<std::string>(), size.get<uint64_t>());
        answer["authenticated"] = true;
      }
    }
    objects.push_back(answer);
  }
  call.reply_json(200, {{"transfer", "basic"}, {"objects", objects}, {"hash_algo", "sha256"}}, kLfsContentType);
}

void handle_lfs_verify(ServerContext& ctx, Call& call) {
  json body = call.read_json_object(kBatchBodyLimit);
  std::string oid = body.value("oid", "");
  int64_t size = body.contains("size") && body["size"].is_number_integer() ? body["size"].get<int64_t>() : -1;
  int64_t stored = ctx.store.object_size(oid);
  if (stored < 0) throw HttpError(404, "", "LFS object " + oid + " is not stored");
  if (stored != size) throw HttpError(422, "", "LFS object " + oid + " is stored with size " + std::to_string(stored));
  call.reply_json(200, {{"message", "ok"}}, kLfsContentType);
}

void handle_lfs_upload(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  if (s.size() < 2 || !is_sha256_hex(s[1])) throw HttpError(404, "", "unknown LFS upload URL");
  const std::string& oid = s[1];
  const std::string& m = call.req.method;
  if (s.size() == 2 && m == "PUT") return put_basic(ctx, call, oid);
  if (s.size() == 4 && s[2] == "part" && m == "PUT") return put_part(ctx, call, oid, s[3]);
  if (s.size() == 3 && s[2] == "complete" && m == "POST") return complete_multipart(ctx, call, oid);
  throw HttpError(404, "", "unknown LFS upload URL");
}

}  // namespace slahub::server
