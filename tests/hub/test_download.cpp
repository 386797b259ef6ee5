// Downloads on a scripted transport: cache layout, resume, restart, truncation, integrity.
#include "catch.hpp"

#include "sla/hub/download.h"
#include "fake_transport.h"
#include "sla/hub/common/hashing.h"
#include "temp_dir.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace sla::hub;
using sla::hub::testing::FakeReply;
using sla::hub::testing::FakeTransport;
using sla::test::entries_under;
using sla::test::TempDir;

namespace {

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kPointerOid = "feedfacefeedfacefeedfacefeedfacefeedface";  // the LFS pointer's git sha1

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A small repo: a regular file and an LFS file (served through an absolute redirect to a CDN).
struct Repo {
  std::string config = "{\"attention_head_dim\": 128}\n";
  std::string big = std::string(5000, 'x') + "tail";
  std::string config_etag = git_blob_sha1_hex(config);
  std::string big_etag = sha256_hex(big);
  RepoRef ref{"alice/m1", RepoType::kModel};

  void script_listing(FakeTransport& fake) {
    fake.on("GET", "/api/models/alice/m1/revision/main", {200, {}, R"({"id":"alice/m1","sha":")" + kCommit + "\"}"});
    nlohmann::json tree = nlohmann::json::array(
        {{{"type", "file"}, {"path", "config.json"}, {"size", config.size()}, {"oid", config_etag}},
         {{"type", "directory"}, {"path", "sub"}, {"oid", "d"}},
         {{"type", "file"}, {"path", "sub/deep/big.bin"}, {"size", big.size()}, {"oid", kPointerOid},
          {"lfs", {{"oid", big_etag}, {"size", big.size()}, {"pointerSize", 130}}}}});
    fake.on("GET", "/api/models/alice/m1/tree/" + kCommit, {200, {}, tree.dump()});
  }
  void script_heads(FakeTransport& fake) {
    fake.on("HEAD", "/resolve/" + kCommit + "/config.json",
            {200, {{"X-Repo-Commit", kCommit}, {"ETag", "\"" + config_etag + "\""}, {"Content-Length", std::to_string(config.size())}}, ""});
    fake.on("HEAD", "/resolve/" + kCommit + "/sub/deep/big.bin",
            {302,
             {{"Location", "http://cdn.test/blob/" + big_etag},
              {"X-Repo-Commit", kCommit},
              {"X-Linked-Etag", "\"" + big_etag + "\""},
              {"X-Linked-Size", std::to_string(big.size())},
              {"ETag", "\"" + kPointerOid + "\""}},
             ""});
  }
  void script_config_get(FakeTransport& fake) { fake.on("GET", "/resolve/" + kCommit + "/config.json", {200, {}, config}); }
  // Everything but the big blob's body: listing, HEAD of each file, config.json.
  void script_metadata(FakeTransport& fake) {
    script_listing(fake);
    script_heads(fake);
    script_config_get(fake);
  }
};

struct Fixture : sla::hub::testing::FakeHub {
  TempDir tmp;
  Repo repo;
  SnapshotOptions options() {
    SnapshotOptions o;
    o.cache_dir = (tmp / "hub").string();
    o.threads = 1;
    return o;
  }
  fs::path repo_dir() { return tmp / "hub" / "models--alice--m1"; }
};

}  // namespace

TEST_CASE("snapshot into the cache: Python's layout exactly") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});

  const SnapshotResult result = snapshot_download(f.client, f.repo.ref, f.options());
  CHECK(result.commit == kCommit);
  CHECK(result.path == (f.repo_dir() / "snapshots" / kCommit).string());
  CHECK(read_all(f.tmp / "hub" / "CACHEDIR.TAG").rfind("Signature: 8a477f597d28d172789f06886806bc55\n", 0) == 0);
  CHECK(read_all(f.repo_dir() / "refs" / "main") == kCommit);  // no trailing newline
  CHECK(read_all(f.repo_dir() / "blobs" / f.repo.config_etag) == f.repo.config);
  CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
  const fs::path snap = f.repo_dir() / "snapshots" / kCommit;
  CHECK(fs::read_symlink(snap / "config.json").string() == "../../blobs/" + f.repo.config_etag);
  CHECK(fs::read_symlink(snap / "sub/deep/big.bin").string() == "../../../../blobs/" + f.repo.big_etag);
  CHECK(read_all(snap / "sub/deep/big.bin") == f.repo.big);
  const auto tree = nlohmann::json::parse(read_all(f.repo_dir() / "trees" / (kCommit + ".json")));
  CHECK(tree["format_version"] == 1);
  CHECK(tree["files"]["sub/deep/big.bin"]["lfs_sha256"] == f.repo.big_etag);
  CHECK(tree["files"]["config.json"]["blob_id"] == f.repo.config_etag);
  for (const auto& name : entries_under(f.repo_dir() / "blobs")) CHECK(name.find(".incomplete") == std::string::npos);

  // The HEAD asks for identity encoding; authorization never goes to the CDN host.
  for (const auto& r : f.fake.requests()) {
    const bool has_auth = std::any_of(r.headers.begin(), r.headers.end(), [](auto& h) { return h.first == "authorization"; });
    if (r.url.find("cdn.test") != std::string::npos) CHECK_FALSE(has_auth);
    else CHECK(has_auth);
    if (r.method == "HEAD") {
      CHECK_FALSE(r.follow_redirects);
      CHECK(std::find(r.headers.begin(), r.headers.end(), std::make_pair(std::string("Accept-Encoding"), std::string("identity"))) !=
            r.headers.end());
    }
  }

  SECTION("a second pull of main reuses every file: one revision call, no HEAD, no GET of content") {
    f.fake.on("GET", "/api/models/alice/m1/revision/main", {200, {}, R"({"id":"alice/m1","sha":")" + kCommit + "\"}"});
    const size_t before = f.fake.requests().size();
    const auto again = snapshot_download(f.client, f.repo.ref, f.options());
    CHECK(f.fake.requests().size() == before + 1);
    for (const auto& file : again.files) CHECK_FALSE(file.downloaded);
  }
  SECTION("a commit REV with the snapshot present sends no request at all") {
    auto o = f.options();
    o.revision = kCommit;
    const size_t before = f.fake.requests().size();
    snapshot_download(f.client, f.repo.ref, o);
    CHECK(f.fake.requests().size() == before);
  }
}

TEST_CASE("a connection dropped mid-body is resumed with Range") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  FakeReply dropped{200, {}, f.repo.big};
  dropped.drop_after = 1234;
  f.fake.on("GET", "http://cdn.test/blob/", dropped);
  f.fake.on("GET", "http://cdn.test/blob/", {206, {{"Content-Range", "bytes 1234-5003/5004"}}, f.repo.big.substr(1234)});
  snapshot_download(f.client, f.repo.ref, f.options());
  CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
  const auto requests = f.fake.requests();
  const auto& last = requests.back();
  CHECK(std::find(last.headers.begin(), last.headers.end(), std::make_pair(std::string("Range"), std::string("bytes=1234-"))) !=
        last.headers.end());
  CHECK(f.sleeps == std::vector<double>{1});
}

TEST_CASE("a server that ignores Range (200 to a resume) makes the download start over") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  FakeReply dropped{200, {}, f.repo.big};
  dropped.drop_after = 3000;
  f.fake.on("GET", "http://cdn.test/blob/", dropped);
  f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});  // whole body again despite Range
  snapshot_download(f.client, f.repo.ref, f.options());
  CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
}

TEST_CASE("a body truncated without an error is resumed; endless truncation fails and nothing lands") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  SECTION("resumed") {
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big.substr(0, 100)});
    f.fake.on("GET", "http://cdn.test/blob/", {206, {}, f.repo.big.substr(100)});
    snapshot_download(f.client, f.repo.ref, f.options());
    CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
  }
  SECTION("always short") {
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big.substr(0, 100)}, -1);
    try {
      snapshot_download(f.client, f.repo.ref, f.options());
      FAIL("no error");
    } catch (const HubError& e) {
      CHECK(e.code() == "E_HUB_INTEGRITY");
    }
    CHECK_FALSE(fs::exists(f.repo_dir() / "blobs" / f.repo.big_etag));
    CHECK_FALSE(fs::exists(f.repo_dir() / "snapshots" / kCommit / "sub/deep/big.bin"));
    // The bytes got so far stay under the one deterministic name, for the next pull to resume.
    CHECK(read_all(f.repo_dir() / "blobs" / (f.repo.big_etag + ".incomplete")) == f.repo.big.substr(0, 100));
    for (const auto& name : entries_under(f.repo_dir() / "blobs"))
      if (name.find(".incomplete") != std::string::npos) CHECK(name == f.repo.big_etag + ".incomplete");
    CHECK_FALSE(fs::exists(f.repo_dir() / "trees"));  // an incomplete snapshot has no tree cache
  }
}

TEST_CASE("an interrupted earlier pull is resumed from blobs/<etag>.incomplete with Range, and still hash-checked") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  const fs::path partial = f.repo_dir() / "blobs" / (f.repo.big_etag + ".incomplete");
  fs::create_directories(partial.parent_path());
  SECTION("the right bytes: only the rest is fetched") {
    std::ofstream(partial, std::ios::binary) << f.repo.big.substr(0, 4000);
    f.fake.on("GET", "http://cdn.test/blob/", {206, {{"Content-Range", "bytes 4000-5003/5004"}}, f.repo.big.substr(4000)});
    snapshot_download(f.client, f.repo.ref, f.options());
    CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
    CHECK_FALSE(fs::exists(partial));
    const auto last = f.fake.requests().back();
    CHECK(std::find(last.headers.begin(), last.headers.end(), std::make_pair(std::string("Range"), std::string("bytes=4000-"))) !=
          last.headers.end());
  }
  SECTION("wrong bytes: the hash check fails, the partial file is discarded, the next pull starts over") {
    std::string wrong = f.repo.big.substr(0, 4000);
    wrong[7] ^= 1;
    std::ofstream(partial, std::ios::binary) << wrong;
    f.fake.on("GET", "http://cdn.test/blob/", {206, {}, f.repo.big.substr(4000)});
    try {
      snapshot_download(f.client, f.repo.ref, f.options());
      FAIL("no error");
    } catch (const HubError& e) {
      CHECK(e.code() == "E_HUB_INTEGRITY");
    }
    CHECK_FALSE(fs::exists(partial));
    CHECK_FALSE(fs::exists(f.repo_dir() / "blobs" / f.repo.big_etag));
    f.repo.script_metadata(f.fake);
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});
    snapshot_download(f.client, f.repo.ref, f.options());
    CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
  }
  SECTION("longer than the file: truncated and fetched whole") {
    std::ofstream(partial, std::ios::binary) << f.repo.big << "extra";
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});
    snapshot_download(f.client, f.repo.ref, f.options());
    CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
    const auto last = f.fake.requests().back();
    CHECK(std::none_of(last.headers.begin(), last.headers.end(), [](auto& h) { return h.first == "Range"; }));
  }
}

TEST_CASE("wrong content: the sha256 (LFS) or git sha1 (regular) check fails and no file lands") {
  Fixture f;
  f.repo.script_listing(f.fake);
  f.repo.script_heads(f.fake);
  std::string corrupt = f.repo.big;
  corrupt[10] ^= 1;
  SECTION("LFS") {
    f.repo.script_config_get(f.fake);
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, corrupt});
    try {
      snapshot_download(f.client, f.repo.ref, f.options());
      FAIL("no error");
    } catch (const HubError& e) {
      CHECK(e.code() == "E_HUB_INTEGRITY");
      CHECK(std::string(e.what()).find("sha256") != std::string::npos);
      CHECK(std::string(e.what()).find(f.repo.big_etag) != std::string::npos);
    }
    CHECK_FALSE(fs::exists(f.repo_dir() / "blobs" / f.repo.big_etag));
  }
  SECTION("regular") {
    std::string bad = f.repo.config;
    bad[0] = '[';
    f.fake.on("GET", "/resolve/" + kCommit + "/config.json", {200, {}, bad});
    f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});
    CHECK_THROWS_AS(snapshot_download(f.client, f.repo.ref, f.options()), HubError);
    CHECK_FALSE(fs::exists(f.repo_dir() / "blobs" / f.repo.config_etag));
    CHECK_FALSE(fs::exists(f.repo_dir() / "snapshots" / kCommit / "config.json"));
  }
  for (const auto& name : entries_under(f.repo_dir() / "blobs")) CHECK(name.find(".incomplete") == std::string::npos);
}

TEST_CASE("download status retries: 429 with Retry-After, then the body") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  f.fake.on("GET", "http://cdn.test/blob/", {429, {{"Retry-After", "2"}}, ""});
  f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});
  snapshot_download(f.client, f.repo.ref, f.options());
  CHECK(f.sleeps == std::vector<double>{3});
  CHECK(read_all(f.repo_dir() / "blobs" / f.repo.big_etag) == f.repo.big);
}

TEST_CASE("a 500 on the content GET fails with a clear message") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  f.fake.on("GET", "http://cdn.test/blob/", {500, {}, "internal"});
  try {
    snapshot_download(f.client, f.repo.ref, f.options());
    FAIL("no error");
  } catch (const HubError& e) {
    CHECK(e.status() == 500);
    CHECK(std::string(e.what()).find("cdn.test") != std::string::npos);
  }
}

TEST_CASE("local-dir download writes the file and then its metadata; a second run reuses it") {
  Fixture f;
  f.repo.script_metadata(f.fake);
  f.fake.on("GET", "http://cdn.test/blob/", {200, {}, f.repo.big});
  auto o = f.options();
  const fs::path local = f.tmp / "local";
  o.local_dir = local.string();
  snapshot_download(f.client, f.repo.ref, o);
  CHECK(read_all(local / "sub/deep/big.bin") == f.repo.big);
  CHECK_FALSE(fs::is_symlink(local / "config.json"));
  CHECK(read_all(local / ".cache/huggingface/.gitignore") == "*");
  std::istringstream meta(read_all(local / ".cache/huggingface/download/sub/deep/big.bin.metadata"));
  std::string commit, etag, stamp;
  std::getline(meta, commit);
  std::getline(meta, etag);
  std::getline(meta, stamp);
  CHECK(commit == kCommit);
  CHECK(etag == f.repo.big_etag);
  CHECK(std::stod(stamp) > 1.7e9);
  CHECK(read_all(f.repo_dir() / "refs" / "main") == kCommit);  // refs live in the main cache

  f.fake.on("GET", "/api/models/alice/m1/revision/main", {200, {}, R"({"id":"alice/m1","sha":")" + kCommit + "\"}"});
  const size_t before = f.fake.requests().size();
  const auto again = snapshot_download(f.client, f.repo.ref, o);
  CHECK(f.fake.requests().size() == before + 1);  // the revision call only
  for (const auto& file : again.files) CHECK_FALSE(file.downloaded);
}

TEST_CASE("HEAD follows relative redirects itself and stops at an absolute one") {
  Fixture f;
  f.fake.on("HEAD", "/alice/old/resolve/main/a.txt", {307, {{"Location", "/alice/m1/resolve/main/a.txt?x=1"}}, ""});
  f.fake.on("HEAD", "/alice/m1/resolve/main/a.txt",
            {200, {{"X-Repo-Commit", kCommit}, {"ETag", "W/\"" + kPointerOid + "\""}, {"Content-Length", "3"}}, ""});
  const auto meta = fetch_file_metadata(f.client, {"alice/old", RepoType::kModel}, "main", "a.txt");
  CHECK(meta.etag == kPointerOid);
  CHECK(meta.size == 3);
  CHECK(meta.commit == kCommit);
  CHECK(meta.download_url == "http://hub.test/alice/m1/resolve/main/a.txt");

  f.fake.on("HEAD", "/resolve/main/b.bin", {302, {{"Location", "http://cdn.test/x"}, {"X-Repo-Commit", kCommit}, {"Content-Length", "9"}}, ""});
  CHECK_THROWS_AS(fetch_file_metadata(f.client, {"alice/m1", RepoType::kModel}, "main", "b.bin"), HubError);  // no X-Linked-Size on a 3xx
}

TEST_CASE("include globs use fnmatch where * crosses folders") {
  CHECK((matches_any_glob("sub/deep/x.json", {"*.json"})));
  CHECK((matches_any_glob("checkpoint-10/sla_attention.pt", {"checkpoint-*/sla_*.pt"})));
  CHECK_FALSE(matches_any_glob("model.safetensors", {"*.json", "*.pt"}));
}
