// LFS: the batch call, the upload targets it hands out (basic PUT, multipart part PUTs and the
// completion POST) and the verify call. Upload targets get no authorization header from the
// client, so each URL names its repo and carries an HMAC of (repo, oid, size[, chunk]) under the
// server's secret instead. Every body is streamed to disk and its sha256 and size checked before
// it becomes an object of that repo (objects are scoped per repo, see repo_store.h).
//
// Bounds (call.h): a batch names at most kMaxBatchObjects objects of at most
// options.max_file_size bytes each, an object has at most kMaxPartsPerObject parts, and the URLs
// of one answer total at most kMaxBatchAnswer bytes; past any of them the request gets a 413.
#include "call.h"
#include "file_util.h"
#include "sla/hub/common/hashing.h"
#include "http_error.h"
#include "url_codec.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <optional>

namespace sla::hub::server {
namespace {

using nlohmann::json;

const char* kLfsContentType = "application/vnd.git-lfs+json";

std::mutex completion_mutex;  // one multipart assembly at a time per server

std::string repo_key(const RepoRef& repo) { return repo.type_plural + "/" + repo.id(); }

std::string basic_signature(const ServerContext& ctx, const RepoRef& repo, const std::string& oid, uint64_t size) {
  return hmac_hex(ctx.store.secret(), "put " + repo_key(repo) + " " + oid + " " + std::to_string(size));
}

std::string multipart_signature(const ServerContext& ctx, const RepoRef& repo, const std::string& oid, uint64_t size,
                                uint64_t chunk) {
  return hmac_hex(ctx.store.secret(), "multipart " + repo_key(repo) + " " + oid + " " + std::to_string(size) + " " +
                                          std::to_string(chunk));
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

uint64_t part_count(uint64_t size, uint64_t chunk) { return size / chunk + (size % chunk != 0); }

std::string upload_dir(const ServerContext& ctx, const RepoRef& repo, const std::string& oid, uint64_t size,
                       uint64_t chunk) {
  return ctx.store.uploads_dir() + "/" + oid + "-" + std::to_string(size) + "-" + std::to_string(chunk) + "-" +
         sha256_hex(repo_key(repo)).substr(0, 16);
}

// The upload (and verify) actions of one object; adds the bytes of its URLs to answer_bytes and
// refuses the whole batch (413) before building them when the answer would pass kMaxBatchAnswer.
json upload_actions(const ServerContext& ctx, const Call& call, const RepoRef& repo, const std::string& oid,
                    uint64_t size, size_t& answer_bytes) {
  std::string lfs = call.base_url + "/_lfs/" + repo_key(repo) + "/" + oid;
  bool multipart = size > ctx.options.multipart_threshold;
  uint64_t chunk = multipart ? multipart_chunk_for(ctx.options, size) : 0;
  uint64_t parts = multipart ? part_count(size, chunk) : 1;
  std::string query = multipart ? "?size=" + std::to_string(size) + "&chunk=" + std::to_string(chunk) +
                                      "&sig=" + multipart_signature(ctx, repo, oid, size, chunk)
                                : "?size=" + std::to_string(size) + "&sig=" + basic_signature(ctx, repo, oid, size);
  // Each part URL is lfs + "/part/<n>" + query plus its JSON key and punctuation (< 32 bytes).
  answer_bytes += (parts + 2) * (lfs.size() + query.size() + 32);
  if (answer_bytes > kMaxBatchAnswer) {
    throw HttpError(413, "", "LFS batch: the answer would hold more than " + std::to_string(kMaxBatchAnswer) +
                                 " bytes of upload URLs; send fewer objects per batch");
  }
  json upload;
  if (!multipart) {
    upload = {{"href", lfs + query}};
  } else {
    json header = {{"chunk_size", std::to_string(chunk)}};
    for (uint64_t n = 1; n <= parts; ++n) header[std::to_string(n)] = lfs + "/part/" + std::to_string(n) + query;
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

void put_basic(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& oid) {
  uint64_t size = query_number(call, "size");
  check_signature(call, basic_signature(ctx, repo, oid, size));
  auto longer = [&] { return bad_request("LFS upload of " + oid + ": body longer than " + std::to_string(size)); };
  if (call.declared_length().value_or(0) > size) {
    call.body_state = Call::BodyState::kBroken;  // not worth draining: the connection closes
    throw longer();
  }
  std::string temp;
  Fd fd = open_temp_file(ctx.store.temp_dir(), temp);
  try {
    ContentHasher sha(ContentHasher::Kind::kSha256, size);
    BufferedFileWriter writer(fd.get(), 0);
    uint64_t written = 0;
    uint64_t received = call.stream_body(size, [&](const char* data, size_t n) {
      if (written + n > size) throw longer();
      sha.update(data, n);
      writer.append(data, n);
      written += n;
    });
    writer.flush();
    check_received(oid, size, sha.hex(), received);
    sync_fd(fd.get(), temp);
    ctx.store.adopt_lfs_object(repo, temp, oid);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  call.reply_json(200, json::object());
}

void put_part(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& oid, const std::string& part_text) {
  uint64_t size = query_number(call, "size");
  uint64_t chunk = query_number(call, "chunk");
  check_signature(call, multipart_signature(ctx, repo, oid, size, chunk));
  uint64_t parts = part_count(size, chunk);
  if (part_text.empty() || part_text.size() > 9 || part_text.find_first_not_of("0123456789") != std::string::npos) {
    throw bad_request("invalid part number '" + part_text + "'");
  }
  uint64_t part = std::stoull(part_text);
  if (part < 1 || part > parts) throw bad_request("part " + part_text + " is outside 1.." + std::to_string(parts));
  uint64_t offset = (part - 1) * chunk;
  uint64_t expected = std::min(chunk, size - offset);
  auto longer = [&] {
    return bad_request("part " + part_text + " of " + oid + ": body longer than " + std::to_string(expected));
  };
  if (call.declared_length().value_or(0) > expected) {
    call.body_state = Call::BodyState::kBroken;
    throw longer();
  }

  std::string dir = upload_dir(ctx, repo, oid, size, chunk);
  make_dirs(dir);
  Fd fd(::open((dir + "/data").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw std::runtime_error("cannot open " + dir + "/data");
  const uint64_t end = offset + expected;
  BufferedFileWriter writer(fd.get(), offset);
  uint64_t received = call.stream_body(expected, [&](const char* data, size_t n) {
    if (offset + n > end) throw longer();
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

void complete_multipart(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& oid) {
  uint64_t size = query_number(call, "size");
  uint64_t chunk = query_number(call, "chunk");
  check_signature(call, multipart_signature(ctx, repo, oid, size, chunk));
  json body = call.read_json_object(kJsonBodyLimit);
  std::string dir = upload_dir(ctx, repo, oid, size, chunk);
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
  // Checked even when another repo holds the same bytes: the upload is what proves possession.
  std::string data = dir + "/data";
  int64_t have = file_size_or_missing(data);
  check_received(oid, size, sha256_of_file(data), have < 0 ? 0 : static_cast<uint64_t>(have));
  ctx.store.adopt_lfs_object(repo, data, oid);
  remove_tree(dir);
  call.reply_json(200, json::object());
}

// A batch object's size: a non-negative JSON integer, or nothing.
std::optional<uint64_t> object_size_field(const json& size) {
  if (size.is_number_unsigned()) return size.get<uint64_t>();
  if (size.is_number_integer() && size.get<int64_t>() >= 0) return static_cast<uint64_t>(size.get<int64_t>());
  return std::nullopt;
}

}  // namespace

uint64_t multipart_chunk_for(const ServerOptions& options, uint64_t size) {
  uint64_t fewest = size / kMaxPartsPerObject + (size % kMaxPartsPerObject != 0);
  return std::max<uint64_t>({options.multipart_chunk, fewest, 1});
}

void handle_lfs_batch(ServerContext& ctx, Call& call, const RepoRef& repo) {
  ctx.store.require_repo(repo);
  json body = call.read_json_object(kJsonBodyLimit);
  std::string operation = body.value("operation", "");
  if (operation != "upload") throw bad_request("LFS batch: only the \"upload\" operation is supported");
  if (!body.contains("objects") || !body["objects"].is_array()) throw bad_request("LFS batch: missing \"objects\"");
  if (body["objects"].size() > kMaxBatchObjects) {
    throw HttpError(413, "", "LFS batch: " + std::to_string(body["objects"].size()) + " objects, more than the " +
                                 std::to_string(kMaxBatchObjects) + " one request may name");
  }
  // Sizes first: one object over the limit refuses the batch before any answer is built.
  for (const auto& object : body["objects"]) {
    auto size = object.is_object() ? object_size_field(object.value("size", json())) : std::nullopt;
    if (size && *size > ctx.options.max_file_size) {
      throw HttpError(413, "", "LFS batch: an object of " + std::to_string(*size) + " bytes is larger than the " +
                                   std::to_string(ctx.options.max_file_size) + " bytes this server accepts (--max-file-size)");
    }
  }
  json objects = json::array();
  size_t answer_bytes = 0;
  for (const auto& object : body["objects"]) {
    json oid = object.is_object() ? object.value("oid", json()) : json();
    json size_json = object.is_object() ? object.value("size", json()) : json();
    auto size = object_size_field(size_json);
    json answer = {{"oid", oid}, {"size", size_json}};
    if (!oid.is_string() || !is_sha256_hex(oid.get<std::string>()) || !size) {
      answer["error"] = {{"code", 422}, {"message", "oid must be 64 lowercase hex and size a non-negative integer"}};
    } else {
      int64_t stored = ctx.store.lfs_object_size(repo, oid.get<std::string>());
      if (stored >= 0 && static_cast<uint64_t>(stored) == *size) {
        // Already uploaded to this repo: no actions, nothing to upload.
      } else if (stored >= 0) {
        answer["error"] = {{"code", 422}, {"message", "object " + oid.get<std::string>() + " is stored with size " + std::to_string(stored)}};
      } else {
        answer["actions"] = upload_actions(ctx, call, repo, oid.get<std::string>(), *size, answer_bytes);
        answer["authenticated"] = true;
      }
    }
    objects.push_back(answer);
  }
  call.reply_json(200, {{"transfer", "basic"}, {"objects", objects}, {"hash_algo", "sha256"}}, kLfsContentType);
}

void handle_lfs_verify(ServerContext& ctx, Call& call, const RepoRef& repo) {
  json body = call.read_json_object(kJsonBodyLimit);
  std::string oid = body.contains("oid") && body["oid"].is_string() ? body["oid"].get<std::string>() : "";
  int64_t size = body.contains("size") && body["size"].is_number_integer() ? body["size"].get<int64_t>() : -1;
  int64_t stored = ctx.store.lfs_object_size(repo, oid);
  if (stored < 0) throw HttpError(404, "", "LFS object " + oid + " was not uploaded to " + repo.id());
  if (stored != size) throw HttpError(422, "", "LFS object " + oid + " is stored with size " + std::to_string(stored));
  call.reply_json(200, {{"message", "ok"}}, kLfsContentType);
}

void handle_lfs_upload(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  if (s.size() < 5 || (s[1] != "models" && s[1] != "datasets") || !is_sha256_hex(s[4])) {
    throw HttpError(404, "", "unknown LFS upload URL");
  }
  RepoRef repo = make_repo_ref(s[1], s[2], s[3]);
  const std::string& oid = s[4];
  const std::string& m = call.req.method;
  if (s.size() == 5 && m == "PUT") return put_basic(ctx, call, repo, oid);
  if (s.size() == 7 && s[5] == "part" && m == "PUT") return put_part(ctx, call, repo, oid, s[6]);
  if (s.size() == 6 && s[5] == "complete" && m == "POST") return complete_multipart(ctx, call, repo, oid);
  throw HttpError(404, "", "unknown LFS upload URL");
}

}  // namespace sla::hub::server
