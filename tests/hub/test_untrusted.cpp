// What a hostile Hub can send, on a scripted transport: each untrusted value is refused with one
// line naming the field, no path leaves the cache root (symlinks included), the token stays on the
// endpoint's origin across redirects, and redirects are bounded.
#include "catch.hpp"

#include "sla/hub/download.h"
#include "fake_transport.h"
#include "sla/hub/common/hashing.h"
#include "sla/hub/untrusted.h"
#include "temp_dir.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace fs = std::filesystem;
using namespace sla::hub;
using sla::hub::testing::FakeReply;
using sla::test::entries_under;
using sla::test::TempDir;

namespace {

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

bool has_header(const HttpRequest& r, const std::string& name) {
  return std::any_of(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == name; });
}

// The E_HUB_UNSAFE message of f(), or "" when it did not throw one.
template <class F>
std::string unsafe_message(F&& f) {
  try {
    f();
  } catch (const HubError& e) {
    if (e.code() == kUnsafeCode) return e.what();
    return std::string("other error: ") + e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("escape_untrusted keeps one printable line") {
  CHECK(escape_untrusted("plain/path.bin") == "plain/path.bin");
  CHECK(escape_untrusted(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(escape_untrusted("line\nverify: ok\x1b[0m") == "line\\x0averify: ok\\x1b[0m");
  CHECK(escape_untrusted("q\"b\\") == "q\\\"b\\\\");
  CHECK(escape_untrusted("\xc3\xa9") == "\\xc3\\xa9");
  CHECK(escape_untrusted(std::string(1000, 'x')).size() == 403);
}

TEST_CASE("ETags: 40 or 64 lower-case hex after W/ and quotes, anything else names the field") {
  const std::string sha1(40, 'a'), sha256(64, '0');
  CHECK(checked_etag("\"" + sha1 + "\"", "ETag", "") == sha1);
  CHECK(checked_etag("W/\"" + sha256 + "\"", "ETag", "") == sha256);
  CHECK(checked_etag(sha1, "ETag", "") == sha1);
  for (const std::string& bad : {std::string("\"../../../../x\""), std::string("/etc/passwd"), std::string(39, 'a'),
                                std::string(41, 'a'), std::string(63, 'a'), std::string(65, 'a'), std::string(40, 'g'),
                                std::string(40, 'A'), std::string(""), std::string("\"\""), "\"" + sha1.substr(1) + "/\""}) {
    const std::string message = unsafe_message([&] { checked_etag(bad, "X-Linked-Etag", "HEAD u"); });
    INFO(bad);
    CHECK(message.rfind("E_HUB_UNSAFE: X-Linked-Etag \"", 0) == 0);
    CHECK(message.find("(HEAD u)") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("commit ids: exactly 40 lower-case hex") {
  CHECK(checked_commit(kCommit, "X-Repo-Commit", "") == kCommit);
  for (const std::string& bad : {std::string("../../x"), kCommit.substr(1), kCommit + "0", std::string(40, 'G'), std::string("")})
    CHECK(unsafe_message([&] { checked_commit(bad, "X-Repo-Commit", ""); }).find("X-Repo-Commit") != std::string::npos);
}

TEST_CASE("repo paths: relative, no '..', '.', empty component, backslash, NUL or control characters") {
  for (const std::string good : {"a", "sub/deep/x.bin", "notes with space.txt", "..hidden", "a..b", ".gitattributes",
                                  "caf\xc3\xa9/\xe6\xa8\xa1\xe5\x9e\x8b.bin", "\xc2\xa0nbsp"})
    CHECK_NOTHROW(check_relative_path(good, "tree entry path", ""));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"../x", "'..' component"},
      {"sub/../../x", "'..' component"},
      {"a/./b", "'.' component"},
      {"/abs", "absolute path"},
      {"a\\b", "backslash"},
      {std::string("a\0b", 3), "NUL byte"},
      {"a\x01" "b", "control character"},
      {"a\x7f", "control character"},
      {"a\xc2\x9b" "31m", "control character"},
      {"a//b", "empty path component"},
      {"a/", "empty path component"},
      {"", "empty path"},
      {std::string(256, 'n'), "longer than 255"},
      {std::string(5000, 'n'), "longer than 4096"},
  };
  for (const auto& [path, why] : bad) {
    const std::string message = unsafe_message([&] { check_relative_path(path, "tree entry path", "GET t"); });
    INFO(escape_untrusted(path));
    CHECK(message.rfind("E_HUB_UNSAFE: tree entry path \"", 0) == 0);
    CHECK(message.find(why) != std::string::npos);
    CHECK(message.find('\0') == std::string::npos);
  }
}

TEST_CASE("confined_path: symlinks already on disk cannot lead out of the root") {
  TempDir tmp;
  const fs::path root = tmp / "root", outside = tmp / "outside";
  fs::create_directories(root / "snapshots" / "c");
  fs::create_directories(root / "blobs");
  fs::create_directories(outside);
  std::ofstream(root / "blobs" / "b1") << "x";
  fs::create_directory_symlink(outside, root / "snapshots" / "c" / "escape");  // a folder link leaving the root
  fs::create_symlink("../../blobs/b1", root / "snapshots" / "c" / "inside");    // a snapshot link: fine
  fs::create_symlink(outside / "file", root / "snapshots" / "c" / "out_file");  // a file link leaving the root
  fs::create_symlink("../../blobs/gone", root / "snapshots" / "c" / "dangling");

  CHECK(confined_path(root.string(), "snapshots/c/new/deeper/x") == root.string() + "/snapshots/c/new/deeper/x");
  CHECK_NOTHROW(confined_path(root.string(), "snapshots/c/inside"));
  CHECK_NOTHROW(confined_path(root.string(), "snapshots/c/dangling"));  // replaced by rename, never written through
  CHECK(unsafe_message([&] { confined_path(root.string(), "snapshots/c/escape/x"); }).find("outside") != std::string::npos);
  std::ofstream(outside / "file") << "secret";
  CHECK(unsafe_message([&] { confined_path(root.string(), "snapshots/c/out_file"); }).find("outside") != std::string::npos);
  CHECK(unsafe_message([&] { confined_path(root.string(), "snapshots/c/dangling/x"); }).find("dangling") != std::string::npos);
  CHECK(unsafe_message([&] { confined_path(root.string(), "blobs/../../outside/x"); }).find("'..'") != std::string::npos);
  CHECK(fs::is_empty(outside / "file") == false);
  CHECK(entries_under(outside) == std::set<std::string>{"file"});
  // A root that does not exist yet has nothing below it to check.
  CHECK(confined_path((tmp / "absent").string(), "a/b") == (tmp / "absent").string() + "/a/b");
}

TEST_CASE("url_origin and resolve_location") {
  CHECK(url_origin("http://Hub.Test/x") == "http://hub.test:80");
  CHECK(url_origin("https://hub.test:443/x?y") == "https://hub.test:443");
  CHECK(url_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080");
  CHECK(url_origin("http://hub.test@evil.test/x") == "http://evil.test:80");
  CHECK(url_origin("http://[::1]:9/x") == "http://[::1]:9");
  CHECK(url_origin("file:///etc/passwd").empty());
  CHECK(url_origin("http:///x").empty());

  const std::string base = "http://hub.test:8/a/b/c?q=1";
  CHECK(resolve_location(base, "http://cdn.test/x") == "http://cdn.test/x");
  CHECK(resolve_location(base, "//cdn.test/x") == "http://cdn.test/x");
  CHECK(resolve_location(base, "/y/z?k#frag") == "http://hub.test:8/y/z?k");
  CHECK(resolve_location(base, "?other") == "http://hub.test:8/a/b/c?other");
  CHECK(resolve_location(base, "d") == "http://hub.test:8/a/b/d");
  CHECK(resolve_location("http://hub.test", "d") == "http://hub.test/d");
  for (const char* bad : {"file:///etc/passwd", "ftp://hub.test/x", "gopher://x", "http://hub.test/a b", "http://x/\r\nInjected: 1",
                         "http://x/\xc2\x9b"})
    CHECK(unsafe_message([&] { resolve_location(base, bad); }).rfind("E_HUB_UNSAFE: Location", 0) == 0);
}

TEST_CASE("redirects: the token stays on the endpoint's origin, the count is bounded, 303 becomes a GET") {
  sla::hub::testing::FakeHub hub;
  HttpRequest request;
  request.url = "http://hub.test/start";
  request.headers = hub.client.hub_headers();
  request.follow_redirects = true;

  SECTION("leaving the endpoint drops authorization for the rest of the chain, back on it included") {
    hub.fake.on("GET", "http://hub.test/start", {302, {{"Location", "/same-origin"}}, ""});
    hub.fake.on("GET", "http://hub.test/same-origin", {302, {{"Location", "http://localhost/x"}}, ""});
    hub.fake.on("GET", "http://localhost/x", {302, {{"Location", "http://hub.test/back"}}, ""});
    hub.fake.on("GET", "http://hub.test/back", {200, {}, "done"});
    CHECK(hub.client.perform(request).body == "done");
    const auto sent = hub.fake.requests();
    REQUIRE(sent.size() == 4);
    CHECK(has_header(sent[0], "authorization"));
    CHECK(has_header(sent[1], "authorization"));
    CHECK_FALSE(has_header(sent[2], "authorization"));
    CHECK_FALSE(has_header(sent[3], "authorization"));
  }
  SECTION("another port, another scheme or a user-info trick is another origin") {
    for (const std::string target : {"http://hub.test:8080/x", "https://hub.test/x", "http://hub.test@evil.test/x", "http://127.0.0.2/x"}) {
      hub.fake.on("GET", "http://hub.test/start", {307, {{"Location", target}}, ""});
      hub.fake.on("GET", target, {200, {}, "ok"});
      hub.client.perform(request);
      INFO(target);
      CHECK_FALSE(has_header(hub.fake.requests().back(), "authorization"));
    }
  }
  SECTION("a request that starts off the endpoint never carries the token") {
    request.url = "http://cdn.test/blob";
    hub.fake.on("GET", "http://cdn.test/blob", {200, {}, "ok"});
    hub.client.perform(request);
    CHECK_FALSE(has_header(hub.fake.requests().back(), "authorization"));
  }
  SECTION("a redirect loop stops after kMaxRedirects") {
    hub.fake.on("GET", "http://hub.test/", {302, {{"Location", "/start"}}, ""}, -1);
    try {
      hub.client.perform(request);
      FAIL("no error");
    } catch (const HubError& e) {
      CHECK(e.code() == "E_HUB_PROTOCOL");
      CHECK(std::string(e.what()).find("more than 10 redirects") != std::string::npos);
    }
    CHECK(hub.fake.requests().size() == static_cast<size_t>(kMaxRedirects) + 1);
  }
  SECTION("a redirect to file:// is refused before it is sent") {
    hub.fake.on("GET", "http://hub.test/start", {302, {{"Location", "file:///etc/passwd"}}, ""});
    CHECK(unsafe_message([&] { hub.client.perform(request); }).find("Location \"file:///etc/passwd\"") != std::string::npos);
    CHECK(hub.fake.requests().size() == 1);
  }
  SECTION("303 after a POST continues as a GET without the body") {
    request.method = "POST";
    request.body = "{}";
    request.headers.emplace_back("Content-Type", "application/json");
    hub.fake.on("POST", "http://hub.test/start", {303, {{"Location", "/result"}}, ""});
    hub.fake.on("GET", "http://hub.test/result", {200, {}, "ok"});
    CHECK(hub.client.perform(request).body == "ok");
    const auto last = hub.fake.requests().back();
    CHECK(last.method == "GET");
    CHECK(last.body.empty());
    CHECK_FALSE(has_header(last, "Content-Type"));
  }
  SECTION("without follow_redirects the 3xx is the answer") {
    request.follow_redirects = false;
    hub.fake.on("GET", "http://hub.test/start", {302, {{"Location", "http://evil.test/"}}, ""});
    CHECK(hub.client.perform(request).status == 302);
    CHECK(hub.fake.requests().size() == 1);
  }
}

namespace {

// A one-file repo whose answers a test can poison before the snapshot runs.
struct HostileRepo : sla::hub::testing::FakeHub {
  TempDir tmp;
  std::string content = "{\"attention_head_dim\": 128}\n";
  std::string etag = git_blob_sha1_hex(content);
  nlohmann::json tree = nlohmann::json::array({{{"type", "file"}, {"path", "config.json"}, {"size", content.size()}, {"oid", etag}}});
  HeaderList head_headers{{"X-Repo-Commit", kCommit}, {"ETag", "\"" + etag + "\""}, {"Content-Length", std::to_string(content.size())}};
  std::string sha = kCommit;

  fs::path cache() const { return tmp / "cache"; }
  fs::path local() const { return tmp / "local"; }

  // Runs a snapshot (into the cache, or local_dir) and returns the E_HUB_UNSAFE message ("" if none).
  std::string pull(bool into_local_dir) {
    fake.on("GET", "/revision/main", {200, {}, nlohmann::json{{"id", "alice/m"}, {"sha", sha}}.dump()});
    fake.on("GET", "/tree/", {200, {}, tree.dump()});
    fake.on("HEAD", "/resolve/", {200, head_headers, ""}, -1);
    fake.on("GET", "/resolve/", {200, {}, content}, -1);
    SnapshotOptions o;
    o.cache_dir = cache().string();
    if (into_local_dir) o.local_dir = local().string();
    o.threads = 1;
    return unsafe_message([&] { snapshot_download(client, {"alice/m", RepoType::kModel}, o); });
  }
};

void set_header(HeaderList& headers, const std::string& name, const std::string& value) {
  for (auto& h : headers)
    if (h.first == name) h.second = value;
}

}  // namespace

TEST_CASE("a hostile ETag, commit or tree entry is refused and nothing lands outside the cache") {
  const bool into_local_dir = GENERATE(false, true);
  {
    HostileRepo repo;
    fs::create_directories(repo.tmp / "victim");
    std::ofstream(repo.tmp / "victim" / "secret") << "do not link me";
    const std::string escape = "../../../../victim/secret";  // from blobs/ (and deeper) up into tmp

    std::string field;
    SECTION("ETag leading out of blobs/") {
      set_header(repo.head_headers, "ETag", "\"" + escape + "\"");
      field = "ETag";
    }
    SECTION("ETag that is no hash") {
      set_header(repo.head_headers, "ETag", "\"" + std::string(40, 'z') + "\"");
      field = "ETag";
    }
    SECTION("X-Repo-Commit") {
      set_header(repo.head_headers, "X-Repo-Commit", "../../../x");
      field = "X-Repo-Commit";
    }
    SECTION("revision sha") {
      repo.sha = "../" + kCommit.substr(3);
      field = "revision answer 'sha'";
    }
    SECTION("tree path") {
      repo.tree[0]["path"] = "../../../../../victim/planted";
      field = "tree entry path";
    }
    SECTION("tree oid naming a file outside (the local-dir copy would read it)") {
      repo.tree[0]["oid"] = escape;
      field = "tree entry oid";
    }
    SECTION("a size beyond the 50 GB downloaded over HTTP") {
      set_header(repo.head_headers, "Content-Length", "50000000001");
      field = "size \"50000000001\"";
    }
    SECTION("a tree size beyond 50 GB") {
      repo.tree[0]["size"] = uint64_t{1} << 63;
      field = "tree entry size";
    }
    SECTION("tree path listed twice") {
      repo.tree.push_back(repo.tree[0]);
      field = "listed twice";
    }
    const auto before = entries_under(repo.tmp.path);
    const std::string message = repo.pull(into_local_dir);
    INFO(message);
    CHECK(message.find(field) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    auto after = entries_under(repo.tmp.path);
    for (auto it = after.begin(); it != after.end();)
      it = it->rfind("cache", 0) == 0 || it->rfind("local", 0) == 0 ? after.erase(it) : std::next(it);
    CHECK(after == before);
    if (fs::exists(repo.cache()))
      for (const auto& e : fs::recursive_directory_iterator(repo.cache()))
        if (fs::is_symlink(e.symlink_status())) CHECK(fs::read_symlink(e.path()).string().find("victim") == std::string::npos);
  }
}

TEST_CASE("a tree answer with a bad name creates nothing at all; so does a bad --revision") {
  HostileRepo repo;
  repo.tree[0]["path"] = std::string("a\x1b]0;title\x07");
  const std::string message = repo.pull(false);
  INFO(message);
  CHECK(message.find("tree entry path \"a\\x1b]0;title\\x07\"") != std::string::npos);
  CHECK_FALSE(fs::exists(repo.cache()));

  SnapshotOptions o;
  o.cache_dir = repo.cache().string();
  o.revision = "../../../escape";
  CHECK(unsafe_message([&] { snapshot_download(repo.client, {"alice/m", RepoType::kModel}, o); }).find("revision") !=
        std::string::npos);
  CHECK(repo.fake.requests().size() == 2);  // only the first pull's revision and tree calls
  CHECK_FALSE(fs::exists(repo.cache()));
}

TEST_CASE("the Link of the next tree page must stay on the endpoint") {
  HostileRepo repo;
  repo.fake.on("GET", "/revision/main", {200, {}, nlohmann::json{{"id", "alice/m"}, {"sha", kCommit}}.dump()});
  repo.fake.on("GET", "/tree/", {200, {{"Link", "<http://evil.test/api/models/alice/m/tree/x?cursor=2>; rel=\"next\""}}, repo.tree.dump()});
  SnapshotOptions o;
  o.cache_dir = repo.cache().string();
  CHECK(unsafe_message([&] { snapshot_download(repo.client, {"alice/m", RepoType::kModel}, o); }).find("Link") != std::string::npos);
  for (const auto& r : repo.fake.requests()) CHECK(r.url.find("evil.test") == std::string::npos);
}

TEST_CASE("a tree path inside .cache/huggingface cannot overwrite the local dir's metadata") {
  HostileRepo repo;
  repo.tree[0]["path"] = ".cache/huggingface/download/x.metadata";
  CHECK(repo.pull(true).find("reserved for the download metadata") != std::string::npos);
  CHECK_FALSE(fs::exists(repo.local()));
  CHECK(repo.pull(false).empty());  // in the cache it is just a file of the snapshot
  CHECK(fs::exists(repo.cache() / "models--alice--m" / "snapshots" / kCommit / ".cache/huggingface/download/x.metadata"));
}
