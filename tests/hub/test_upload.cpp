// Uploads on a scripted transport: preupload, no-op detection, LFS basic and multipart, verify,
// the NDJSON commit.
#include "catch.hpp"

#include "fake_transport.h"
#include "sla/hub/common/hashing.h"
#include "sla/hub/upload.h"
#include "temp_dir.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace sla::hub;
using sla::hub::testing::FakeReply;
using sla::hub::testing::FakeTransport;

namespace {

const std::string kParent = "1111111111111111111111111111111111111111";
const std::string kNew = "2222222222222222222222222222222222222222";

struct UploadFixture : sla::hub::testing::FakeHub {
  sla::test::TempDir tmp;
  fs::path dir = tmp.path;
  std::string big = std::string(2500, 'b') + "end";
  std::string small = "{\"a\": 1}\n";
  RepoRef repo{"alice/m1", RepoType::kModel};

  UploadFixture() {
    std::ofstream(dir / "big.bin", std::ios::binary) << big;
    std::ofstream(dir / "config.json", std::ios::binary) << small;
    std::ofstream(dir / "empty.txt", std::ios::binary);
  }

  std::vector<UploadItem> items() {
    return {{"big.bin", (dir / "big.bin").string(), std::nullopt},
            {"config.json", (dir / "config.json").string(), std::nullopt},
            {"empty.txt", (dir / "empty.txt").string(), std::nullopt},
            {"README.md", {}, std::string("# card\n")}};
  }
  void script_revision() {
    fake.on("GET", "/api/models/alice/m1/revision/", {200, {}, R"({"id":"alice/m1","sha":")" + kParent + "\"}"});
  }
  void script_preupload(const std::string& big_oid = "", const std::string& small_oid = "") {
    nlohmann::json files = nlohmann::json::array(
        {{{"path", "big.bin"}, {"uploadMode", "lfs"}, {"shouldIgnore", false}, {"oid", big_oid.empty() ? nlohmann::json() : nlohmann::json(big_oid)}},
         {{"path", "config.json"}, {"uploadMode", "regular"}, {"shouldIgnore", false}, {"oid", small_oid.empty() ? nlohmann::json() : nlohmann::json(small_oid)}},
         {{"path", "empty.txt"}, {"uploadMode", "lfs"}, {"shouldIgnore", false}},
         {{"path", "README.md"}, {"uploadMode", "regular"}, {"shouldIgnore", false}}});
    fake.on("POST", "/preupload/", {200, {}, nlohmann::json{{"files", files}}.dump()});
  }
  // An LFS batch answer with no objects: nothing to transfer.
  void script_empty_batch() { fake.on("POST", "objects/batch", {200, {}, R"({"objects":[]})"}); }
  void script_commit() {
    fake.on("POST", "/commit/", {200, {}, nlohmann::json{{"commitOid", kNew}, {"commitUrl", "http://hub.test/alice/m1/commit/" + kNew},
                                                         {"pullRequestUrl", "http://hub.test/alice/m1/discussions/3"}}
                                              .dump()});
  }
  std::vector<nlohmann::json> commit_lines() {
    for (const auto& r : fake.requests())
      if (r.url.find("/commit/") != std::string::npos) {
        std::vector<nlohmann::json> lines;
        std::istringstream in(r.body);
        for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
        CHECK(r.body.back() == '\n');
        return lines;
      }
    return {};
  }
  HttpRequest find(const std::string& method, const std::string& url_part) {
    for (const auto& r : fake.requests())
      if (r.method == method && r.url.find(url_part) != std::string::npos) return r;
    FAIL("no request " << method << " " << url_part);
    return {};
  }
};

bool has_header(const HttpRequest& r, const std::string& name) {
  return std::any_of(r.headers.begin(), r.headers.end(), [&](auto& h) { return h.first == name; });
}

}  // namespace

TEST_CASE("basic LFS upload, inline regular files, one NDJSON commit with parentCommit") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  const std::string sha = sha256_hex(f.big);
  f.fake.on("POST", "/alice/m1.git/info/lfs/objects/batch",
            {200, {}, nlohmann::json{{"objects", {{{"oid", sha}, {"size", f.big.size()},
                                                   {"actions", {{"upload", {{"href", "https://huggingface.co/lfs/put/" + sha}, {"header", {{"X-Sig", "s"}}}}},
                                                                {"verify", {{"href", "http://hub.test/lfs/verify"}}}}}}}}}.dump()});
  f.fake.on("PUT", "/lfs/put/", {503, {}, ""});  // retried
  f.fake.on("PUT", "/lfs/put/", {200, {}, ""});
  f.fake.on("POST", "/lfs/verify", {200, {}, "{}"});
  f.script_commit();
  const CommitResult result = upload_commit(f.client, f.repo, f.items(), CommitOptions{});
  CHECK(result.commit_oid == kNew);
  CHECK_FALSE(result.no_op);

  // preupload: sample (base64 of the first 512 bytes) and size
  const auto pre = nlohmann::json::parse(f.find("POST", "/preupload/main").body);
  CHECK(pre["files"][0]["sample"] == base64_encode(f.big.substr(0, 512)));
  CHECK(pre["files"][0]["size"] == f.big.size());
  // batch: basic+multipart, sha256, ref
  const auto batch_request = f.find("POST", "objects/batch");
  const auto batch = nlohmann::json::parse(batch_request.body);
  CHECK((batch["transfers"] == nlohmann::json::array({"basic", "multipart"})));
  CHECK(batch["ref"]["name"] == "main");
  CHECK(batch["objects"].size() == 1);  // the empty file was forced to regular
  // the PUT goes to the endpoint (huggingface.co rewritten), reads the whole file, no authorization
  const auto put = f.find("PUT", "/lfs/put/");
  CHECK(put.url == "http://hub.test/lfs/put/" + sha);
  CHECK_FALSE(has_header(put, "authorization"));
  CHECK_FALSE(has_header(put, "X-Sig"));
  REQUIRE(put.body_file.has_value());
  CHECK(put.body_file->length == f.big.size());
  CHECK(f.sleeps == std::vector<double>{1});
  // verify with the Hub headers
  const auto verify = f.find("POST", "/lfs/verify");
  CHECK(has_header(verify, "authorization"));
  CHECK((nlohmann::json::parse(verify.body) == nlohmann::json{{"oid", sha}, {"size", f.big.size()}}));

  const auto lines = f.commit_lines();
  REQUIRE(lines.size() == 5);
  CHECK(lines[0]["key"] == "header");
  CHECK(lines[0]["value"]["parentCommit"] == kParent);
  CHECK(lines[1]["value"]["path"] == "README.md");
  CHECK(lines[1]["value"]["content"] == base64_encode("# card\n"));
  CHECK((lines[2] == nlohmann::json{{"key", "lfsFile"}, {"value", {{"path", "big.bin"}, {"algo", "sha256"}, {"oid", sha}, {"size", f.big.size()}}}}));
  CHECK(lines[3]["value"]["content"] == base64_encode(f.small));
  CHECK(lines[4]["value"]["path"] == "empty.txt");
  CHECK(lines[4]["value"]["content"] == "");
}

TEST_CASE("multipart: parts read from file ranges, ETags kept verbatim, completion without authorization") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  const std::string sha = sha256_hex(f.big);
  nlohmann::json header{{"chunk_size", "1000"}, {"00001", "http://hub.test/part/1"}, {"00002", "http://hub.test/part/2"},
                        {"3", "http://hub.test/part/3"}};
  f.fake.on("POST", "objects/batch",
            {200, {}, nlohmann::json{{"objects", {{{"oid", sha}, {"size", f.big.size()},
                                                   {"actions", {{"upload", {{"href", "http://hub.test/complete"}, {"header", header}}}}}}}}}.dump()});
  for (int p = 1; p <= 3; ++p) f.fake.on("PUT", "/part/" + std::to_string(p), {200, {{"ETag", "\"etag-" + std::to_string(p) + "\""}}, ""});
  f.fake.on("POST", "/complete", {200, {}, "{}"});
  f.script_commit();
  upload_commit(f.client, f.repo, f.items(), CommitOptions{});

  for (int p = 1; p <= 3; ++p) {
    const auto part = f.find("PUT", "/part/" + std::to_string(p));
    REQUIRE(part.body_file.has_value());
    CHECK(part.body_file->offset == uint64_t(p - 1) * 1000);
    CHECK(part.body_file->length == (p < 3 ? 1000u : f.big.size() - 2000));
    CHECK_FALSE(has_header(part, "authorization"));
  }
  const auto complete = f.find("POST", "/complete");
  CHECK_FALSE(has_header(complete, "authorization"));
  const auto body = nlohmann::json::parse(complete.body);
  CHECK(body["oid"] == sha);
  CHECK((body["parts"] == nlohmann::json::array({{{"partNumber", 1}, {"etag", "\"etag-1\""}},
                                                {{"partNumber", 2}, {"etag", "\"etag-2\""}},
                                                {{"partNumber", 3}, {"etag", "\"etag-3\""}}})));
}

TEST_CASE("no-op: every remote oid equals ours -> no batch, no commit") {
  UploadFixture f;
  f.script_revision();
  nlohmann::json files = nlohmann::json::array(
      {{{"path", "big.bin"}, {"uploadMode", "lfs"}, {"shouldIgnore", false}, {"oid", sha256_hex(f.big)}},
       {{"path", "config.json"}, {"uploadMode", "regular"}, {"shouldIgnore", false}, {"oid", git_blob_sha1_hex(f.small)}},
       {{"path", "empty.txt"}, {"uploadMode", "regular"}, {"shouldIgnore", false}, {"oid", git_blob_sha1_hex("")}},
       {{"path", "README.md"}, {"uploadMode", "regular"}, {"shouldIgnore", true}}});
  f.fake.on("POST", "/preupload/", {200, {}, nlohmann::json{{"files", files}}.dump()});
  const auto result = upload_commit(f.client, f.repo, f.items(), CommitOptions{});
  CHECK(result.no_op);
  CHECK(result.commit_oid == kParent);
  CHECK(f.fake.count("POST", "objects/batch") == 0);
  CHECK(f.fake.count("POST", "/commit/") == 0);
}

TEST_CASE("create_pr: create_pr=1 on preupload and commit, no ref in the batch, revision refs/pr/N") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  f.script_empty_batch();
  f.script_commit();
  CommitOptions options;
  options.create_pr = true;
  const auto result = upload_commit(f.client, f.repo, f.items(), options);
  CHECK(result.revision == "refs/pr/3");
  CHECK(f.find("POST", "/preupload/").url.find("?create_pr=1") != std::string::npos);
  CHECK(f.find("POST", "/commit/").url.find("?create_pr=1") != std::string::npos);
  CHECK_FALSE(nlohmann::json::parse(f.find("POST", "objects/batch").body).contains("ref"));
}

TEST_CASE("the commit is not retried; an LFS object error aborts before the commit") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  SECTION("commit 500") {
    f.script_empty_batch();
    f.fake.on("POST", "/commit/", {500, {}, ""});
    CHECK_THROWS_AS(upload_commit(f.client, f.repo, f.items(), CommitOptions{}), HubError);
    CHECK(f.fake.count("POST", "/commit/") == 1);
  }
  SECTION("batch object error") {
    f.fake.on("POST", "objects/batch",
              {200, {}, nlohmann::json{{"objects", {{{"oid", sha256_hex(f.big)}, {"size", 1}, {"error", {{"code", 422}, {"message", "too big"}}}}}}}.dump()});
    CHECK_THROWS_WITH(upload_commit(f.client, f.repo, f.items(), CommitOptions{}), "E_HUB_LFS: LFS batch refused big.bin: too big");
    CHECK(f.fake.count("POST", "/commit/") == 0);
  }
}

TEST_CASE("revisions are percent-encoded in preupload and commit URLs") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  f.script_empty_batch();
  f.script_commit();
  CommitOptions options;
  options.revision = "refs/pr/1";
  upload_commit(f.client, f.repo, f.items(), options);
  CHECK(f.find("GET", "/revision/").url == "http://hub.test/api/models/alice/m1/revision/refs%2Fpr%2F1");
  CHECK(f.find("POST", "/preupload/").url == "http://hub.test/api/models/alice/m1/preupload/refs%2Fpr%2F1");
  CHECK(f.find("POST", "/commit/").url == "http://hub.test/api/models/alice/m1/commit/refs%2Fpr%2F1");
}

TEST_CASE("a malformed LFS batch answer is HubError E_HUB_PROTOCOL, not a JSON or std::stoull exception") {
  UploadFixture f;
  f.script_revision();
  f.script_preupload();
  f.script_commit();
  const std::string sha = sha256_hex(f.big);
  auto batch_with = [&](const nlohmann::json& upload) {
    f.fake.on("POST", "objects/batch",
              {200, {}, nlohmann::json{{"objects", {{{"oid", sha}, {"size", f.big.size()}, {"actions", {{"upload", upload}}}}}}}.dump()});
  };
  std::string expected_start;
  SECTION("chunk_size not a number") {
    batch_with({{"href", "http://hub.test/complete"}, {"header", {{"chunk_size", "lots"}, {"1", "http://hub.test/part/1"}}}});
    expected_start = "E_HUB_PROTOCOL: multipart chunk_size of big.bin is not a number";
  }
  SECTION("chunk_size beyond 64 bits") {
    batch_with({{"href", "http://hub.test/complete"}, {"header", {{"chunk_size", "99999999999999999999999"}}}});
    expected_start = "E_HUB_PROTOCOL: multipart chunk_size of big.bin is not a number";
  }
  SECTION("a part URL that is not a string") {
    batch_with({{"href", "http://hub.test/complete"}, {"header", {{"chunk_size", 1000}, {"1", 7}}}});
    expected_start = "E_HUB_PROTOCOL: multipart part 1 URL is not a string";
  }
  SECTION("href missing") {
    batch_with({{"header", nlohmann::json::object()}});
    expected_start = "E_HUB_PROTOCOL: LFS batch answer for big.bin is malformed";
  }
  SECTION("href not a string") {
    batch_with({{"href", 12}});
    expected_start = "E_HUB_PROTOCOL: LFS batch answer for big.bin is malformed";
  }
  try {
    upload_commit(f.client, f.repo, f.items(), CommitOptions{});
    FAIL("no error");
  } catch (const HubError& e) {
    CHECK(e.code() == "E_HUB_PROTOCOL");
    CHECK(std::string(e.what()).rfind(expected_start, 0) == 0);
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
  CHECK(f.fake.count("PUT", "/part/") == 0);
  CHECK(f.fake.count("POST", "/commit/") == 0);
}
