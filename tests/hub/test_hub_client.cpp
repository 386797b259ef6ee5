// Hub client core: URL spelling, endpoint and token resolution, error mapping, retries.
#include "catch.hpp"

#include "fake_transport.h"
#include "sla/hub/hub_client.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

using namespace sla::hub;
using sla::hub::testing::FakeReply;
using sla::hub::testing::FakeTransport;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

struct Sleeps {
  std::vector<double> waits;
  RetryPolicy policy() {
    RetryPolicy p;
    p.sleep = [this](double s) { waits.push_back(s); };
    return p;
  }
};

HubConfig test_config() {
  HubConfig c;
  c.endpoint = "http://hub.test";
  c.token = "tok";
  c.user_agent = "sla-toolkit/test; hf_hub/1.29.0";
  return c;
}

}  // namespace

TEST_CASE("percent-encoding matches urllib.parse.quote") {
  CHECK(percent_encode("refs/pr/1", false) == "refs%2Fpr%2F1");
  CHECK(percent_encode("sub/a b.txt", true) == "sub/a%20b.txt");
  CHECK(percent_encode("a~b_c-d.e", false) == "a~b_c-d.e");
  CHECK(percent_encode("é+&?#", true) == "%C3%A9%2B%26%3F%23");
}

TEST_CASE("resolve and API URLs") {
  FakeTransport fake;
  HubClient client(test_config(), fake);
  RepoRef model{"alice/m1", RepoType::kModel}, dataset{"alice/d1", RepoType::kDataset};
  CHECK(client.resolve_url(model, "refs/pr/1", "sub/a b.txt") == "http://hub.test/alice/m1/resolve/refs%2Fpr%2F1/sub/a%20b.txt");
  CHECK(client.resolve_url(dataset, "main", "x.csv") == "http://hub.test/datasets/alice/d1/resolve/main/x.csv");
  CHECK(client.api_url(model, "revision/main") == "http://hub.test/api/models/alice/m1/revision/main");
  CHECK(client.api_url(dataset, "tree/main") == "http://hub.test/api/datasets/alice/d1/tree/main");
}

TEST_CASE("repo ids are checked like the Python client") {
  CHECK_NOTHROW(check_repo_id("alice/m-1.x_y"));
  CHECK_THROWS_AS(check_repo_id("m1"), std::invalid_argument);
  CHECK_THROWS_AS(check_repo_id("alice/a--b"), std::invalid_argument);
  CHECK_THROWS_AS(check_repo_id("alice/a..b"), std::invalid_argument);
  CHECK_THROWS_AS(check_repo_id("alice/m.git"), std::invalid_argument);
  CHECK_THROWS_AS(check_repo_id("alice/m 1"), std::invalid_argument);
  CHECK_THROWS_AS(check_repo_id("alice/" + std::string(100, 'a')), std::invalid_argument);
}

TEST_CASE("endpoint: HF_ENDPOINT without trailing slashes, default huggingface.co") {
  const HubConfig plain = HubConfig::from_environment(env_of({{"HOME", "/nonexistent"}}), "0.1.0");
  CHECK(plain.endpoint == "https://huggingface.co");
  CHECK(plain.user_agent == "sla-toolkit/0.1.0; hf_hub/1.29.0");
  const HubConfig local = HubConfig::from_environment(env_of({{"HF_ENDPOINT", "http://127.0.0.1:9//"}, {"HOME", "/nonexistent"}}), "1");
  CHECK(local.endpoint == "http://127.0.0.1:9");
}

TEST_CASE("token resolution order: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH, HF_HOME/token") {
  const auto dir = std::filesystem::temp_directory_path() / ("hubcli_token_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "home");
  { std::ofstream(dir / "home" / "token") << "  from_home\r\n"; }
  { std::ofstream(dir / "explicit_token") << "from_path\n"; }
  const std::string home = (dir / "home").string(), path = (dir / "explicit_token").string();

  auto token_with = [](std::map<std::string, std::string> vars) {
    return HubConfig::from_environment(env_of(std::move(vars)), "1").token.value_or("<none>");
  };
  CHECK((token_with({{"HF_TOKEN", "a"}, {"HUGGING_FACE_HUB_TOKEN", "b"}, {"HF_HOME", home}}) == "a"));
  CHECK((token_with({{"HUGGING_FACE_HUB_TOKEN", "b"}, {"HF_HOME", home}}) == "b"));
  CHECK((token_with({{"HF_TOKEN_PATH", path}, {"HF_HOME", home}}) == "from_path"));
  CHECK((token_with({{"HF_HOME", home}}) == "from_home"));
  // XDG_CACHE_HOME/huggingface when HF_HOME is unset
  const std::string xdg_home = hf_home(env_of({{"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}}));
  CHECK(xdg_home == "/x/huggingface");
  const std::string default_home = hf_home(env_of({{"HOME", "/h"}}));
  CHECK(default_home == "/h/.cache/huggingface");
  { std::ofstream(dir / "home" / "token") << " \n"; }
  CHECK((token_with({{"HF_HOME", home}}) == "<none>"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("errors are typed from X-Error-Code and carry status and URL") {
  FakeTransport fake;
  HubClient client(test_config(), fake);
  HttpRequest request;
  request.url = "http://hub.test/api/models/alice/m1/revision/nope";

  struct Case {
    int status;
    HeaderList headers;
    std::string body;
    std::string code;
    std::string text;
    bool unusable;  // exit 2 in the tools (is_unusable_input), not 1
  };
  const std::vector<Case> cases = {
      {404, {{"X-Error-Code", "RepoNotFound"}}, "", "RepoNotFound", "repository not found", true},
      {404, {{"X-Error-Code", "RevisionNotFound"}}, "", "RevisionNotFound", "revision not found", true},
      {404, {{"X-Error-Code", "EntryNotFound"}}, "", "EntryNotFound", "file not found", true},
      {404, {}, "", "E_HUB_NOT_FOUND", "not found", true},
      {403, {{"X-Error-Code", "GatedRepo"}}, "", "GatedRepo", "gated", true},
      {401, {{"X-Error-Message", "Invalid credentials in Authorization header"}}, "", "E_HUB_AUTH",
       "Invalid credentials in Authorization header", true},
      {403, {}, R"({"error":"You don't have the rights"})", "E_HUB_AUTH", "You don't have the rights", true},
      {500, {}, "boom", "E_HUB_HTTP", "boom", false},
  };
  for (const auto& c : cases) {
    fake.on("GET", "/revision/", {c.status, c.headers, c.body});
    try {
      client.send(request, false);
      FAIL("no error for " << c.code);
    } catch (const HubError& e) {
      CHECK(e.code() == c.code);
      CHECK(is_unusable_input(e) == c.unusable);
      CHECK(e.status() == c.status);
      CHECK(e.url() == request.url);
      CHECK(contains(e.what(), c.text));
      CHECK(contains(e.what(), "HTTP " + std::to_string(c.status)));
      CHECK(contains(e.what(), request.url));
    }
  }
}

TEST_CASE("retries: 1,2,4,8,8 s backoff, Retry-After and RateLimit as N+1, then the mapped error") {
  FakeTransport fake;
  Sleeps sleeps;
  HubClient client(test_config(), fake, sleeps.policy());
  HttpRequest request;
  request.method = "POST";
  request.url = "http://hub.test/api/models/alice/m1/preupload/main";

  SECTION("all attempts fail") {
    fake.on("POST", "/preupload/", {503, {}, ""}, -1);
    CHECK_THROWS_AS(client.send(request, true), HubError);
    CHECK((sleeps.waits == std::vector<double>{1, 2, 4, 8, 8}));
    CHECK(fake.count("POST", "/preupload/") == 6);
  }
  SECTION("429 with Retry-After, then success") {
    fake.on("POST", "/preupload/", {429, {{"Retry-After", "3"}}, ""});
    fake.on("POST", "/preupload/", {429, {{"RateLimit", "\"api\";r=0;t=7"}, {"Retry-After", "3"}}, ""});
    fake.on("POST", "/preupload/", {200, {}, "{}"});
    CHECK(client.send(request, true).status == 200);
    CHECK((sleeps.waits == std::vector<double>{4, 8}));
  }
  SECTION("dropped connections are retried") {
    FakeReply refused;
    refused.refuse = true;
    fake.on("POST", "/preupload/", refused, 2);
    fake.on("POST", "/preupload/", {200, {}, "{}"});
    CHECK(client.send(request, true).status == 200);
    CHECK((sleeps.waits == std::vector<double>{1, 2}));
  }
  SECTION("no retry when not asked (the commit)") {
    fake.on("POST", "/preupload/", {500, {}, ""});
    CHECK_THROWS_AS(client.send(request, false), HubError);
    CHECK(sleeps.waits.empty());
    CHECK(fake.count("POST", "/preupload/") == 1);
  }
  SECTION("404 is not retried") {
    fake.on("POST", "/preupload/", {404, {{"X-Error-Code", "RepoNotFound"}}, ""});
    try {
      client.send(request, true);
      FAIL("no error");
    } catch (const HubError& e) {
      CHECK(e.code() == "RepoNotFound");
    }
    CHECK(sleeps.waits.empty());
  }
}

TEST_CASE("Hub headers carry the token and user agent") {
  FakeTransport fake;
  HubClient client(test_config(), fake);
  const auto headers = client.hub_headers();
  CHECK(std::find(headers.begin(), headers.end(), std::make_pair(std::string("authorization"), std::string("Bearer tok"))) !=
        headers.end());
  HubConfig anonymous = test_config();
  anonymous.token.reset();
  HubClient anon(anonymous, fake);
  for (auto& h : anon.hub_headers()) CHECK(h.first != "authorization");
}
