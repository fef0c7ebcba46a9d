// Storage schemes against real peers started by the test: a local HTTP server (tests/peers/
// http_peer.py) for http:// and for hf:// in Hub layout; file:// confined to allowed roots.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/sha256.h"
#include "common/uri.h"
#include "tests/support/http_peer.h"
#include "tests/support/process.h"
#include "tests/support/s3_peer.h"
#include "tests/support/test_util.h"
#include "worker/storage/download_cache.h"
#include "worker/storage/filesystem_factory.h"
#include "worker/storage/local_filesystem.h"
#include "worker/storage/s3_filesystem.h"
#include "worker/storage/tenant_credentials.h"

namespace shears::worker {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::HttpPeer;
using shears::testing::Process;
using shears::testing::S3Peer;
using shears::testing::TempDir;
using shears::testing::WaitForFile;

std::string Bytes(int64_t n) {
  std::string s(n, '\0');
  for (int64_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7919 + i / 251) & 0xff);
  return s;
}

StorageOptions Options(const std::string& dir) {
  StorageOptions o;
  o.cache_dir = dir;
  o.retry.initial_backoff = absl::Milliseconds(10);
  return o;
}

// tests/data/<model> laid out as {root}/{org}/{name}/resolve/{revision}/..., sharded in two.
void HubLayout(const std::string& root, const std::string& repo, const std::string& revision) {
  const fs::path dir = fs::path(root) / repo / "resolve" / revision;
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.json"}) fs::copy_file(DataDir("tiny-llama") + "/" + f, dir / f);
  // Two shards: the first half of the weights file and the rest, named by an index. The engine
  // is not involved here, only the bytes and the layout.
  const std::string weights = ReadFile(DataDir("tiny-llama") + "/model.safetensors").value();
  std::ofstream(dir / "model-00001-of-00002.safetensors", std::ios::binary) << weights.substr(0, weights.size() / 2);
  std::ofstream(dir / "model-00002-of-00002.safetensors", std::ios::binary) << weights.substr(weights.size() / 2);
  nlohmann::json index = {{"metadata", {{"total_size", weights.size()}}},
                          {"weight_map",
                           {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                            {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
}

TEST(Http, DownloadsAFileWithItsDigestAndReportsProgress) {
  TempDir dir;
  fs::create_directories(dir / "www");
  const std::string data = Bytes(3 << 20);
  std::ofstream(dir / "www/data.bin", std::ios::binary) << data;
  HttpPeer peer(dir / "www", dir.path());
  auto storage = FileSystemFor(peer.url() + "/data.bin", Options(dir / "work"));
  ASSERT_TRUE(storage.ok()) << storage.status();
  int64_t reported = 0;
  auto path = (*storage)->Localize(peer.url() + "/data.bin", [&](const TransferProgress& p) {
    EXPECT_EQ(p.name, "data.bin");
    reported = p.bytes;
  });
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(ReadFile(*path).value(), data);
  EXPECT_EQ(reported, static_cast<int64_t>(data.size())) << "the last report is the whole file";
  EXPECT_EQ((*storage)->Put(*path, peer.url() + "/x").code(), absl::StatusCode::kInvalidArgument) << "read-only";
}

// A file past the worker's --max-download-bytes stops at its Content-Length, or at its bytes when
// the server sends none, and is never retried.
TEST(Http, AFileLargerThanTheDownloadLimitStopsAndSaysSo) {
  TempDir dir;
  fs::create_directories(dir / "www");
  std::ofstream(dir / "www/data.bin", std::ios::binary) << Bytes(1 << 20);
  HttpPeer peer(dir / "www", dir.path());
  HttpClient client(Options(dir.path()).retry, {}, {}, /*max_download_bytes=*/100000);
  auto got = client.Download(peer.url() + "/data.bin", {}, dir / "out/data.bin", "data.bin", {});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(got.status().message(),
            absl::StrCat("GET ", peer.url(), "/data.bin: data.bin is larger than the worker's limit of 100000 bytes a "
                         "file (--max-download-bytes)"));
  EXPECT_EQ(peer.Requests().size(), 1u) << "not retried";
  EXPECT_FALSE(fs::exists(dir / "out/data.bin.part"));
  EXPECT_FALSE(fs::exists(dir / "out/data.bin"));
}

TEST(Http, ABodyCutShortResumesWithARangeRequest) {
  TempDir dir;
  fs::create_directories(dir / "www");
  const std::string data = Bytes(1 << 20);
  std::ofstream(dir / "www/data.bin", std::ios::binary) << data;
  HttpPeer peer(dir / "www", dir.path(), {"--cut", "/data.bin:300000"});
  HttpClient client(Options(dir.path()).retry);
  auto got = client.Download(peer.url() + "/data.bin", {}, dir / "out/data.bin", "data.bin", {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ReadFile(dir / "out/data.bin").value(), data);
  EXPECT_EQ(got->sha256, Sha256Hex(data)) << "the digest covers both parts";
  EXPECT_EQ(peer.Requests(), (std::vector<std::string>{"GET /data.bin -", "GET /data.bin bytes=300000-"}));
  EXPECT_FALSE(fs::exists(dir / "out/data.bin.part"));
}

TEST(Http, AServerThatIgnoresTheRangeSendsTheWholeFileAgain) {
  TempDir dir;
  fs::create_directories(dir / "www");
  const std::string data = Bytes(1 << 20);
  std::ofstream(dir / "www/data.bin", std::ios::binary) << data;
  HttpPeer peer(dir / "www", dir.path(), {"--cut", "/data.bin:300000", "--ignore-range", "/data.bin"});
  HttpClient client(Options(dir.path()).retry);
  auto got = client.Download(peer.url() + "/data.bin", {}, dir / "out/data.bin", "data.bin", {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ReadFile(dir / "out/data.bin").value(), data) << "the partial bytes were not kept in front";
  EXPECT_EQ(got->bytes, static_cast<int64_t>(data.size()));
  EXPECT_EQ(got->sha256, Sha256Hex(data));
}

TEST(Http, RetriesServerErrorsButNotMissingFiles) {
  TempDir dir;
  fs::create_directories(dir / "www");
  std::ofstream(dir / "www/data.bin") << "payload";
  HttpPeer peer(dir / "www", dir.path(), {"--fail", "/data.bin:2"});
  HttpClient client(Options(dir.path()).retry);
  auto got = client.Download(peer.url() + "/data.bin", {}, dir / "out/data.bin", "data.bin", {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(peer.Requests().size(), 3u) << "two 503s, then the file";
  auto missing = client.Download(peer.url() + "/nope.bin", {}, dir / "out/nope.bin", "nope.bin", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nope.bin: HTTP 404"), std::string::npos) << missing.status();
  EXPECT_EQ(peer.Requests().size(), 4u) << "a 404 is not retried";
  EXPECT_FALSE(fs::exists(dir / "out/nope.bin"));
}

TEST(Hub, FetchesAShardedModelInHubLayoutOnceAndCachesIt) {
  TempDir dir;
  HubLayout(dir / "hub", "org/tiny", "main");
  HubLayout(dir / "hub", "org/tiny", "v2");
  HttpPeer peer(dir / "hub", dir.path());
  setenv("HF_ENDPOINT", peer.url().c_str(), 1);
  auto storage = FileSystemFor("hf://org/tiny", Options(dir / "work"));
  ASSERT_TRUE(storage.ok());
  auto model = (*storage)->Localize("hf://org/tiny", {});
  ASSERT_TRUE(model.ok()) << model.status();
  for (const char* f : {"config.json", "tokenizer.json", "model.safetensors.index.json",
                        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    EXPECT_EQ(ReadFile(absl::StrCat(*model, "/", f)).value(),
              ReadFile(absl::StrCat(dir.path(), "/hub/org/tiny/resolve/main/", f)).value())
        << f;
  }
  const size_t fetched = peer.Requests().size();
  auto again = (*storage)->Localize("hf://org/tiny", {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *model);
  EXPECT_EQ(peer.Requests().size(), fetched) << "a second job on the same model downloads nothing";
  auto v2 = (*storage)->Localize("hf://org/tiny@v2", {});
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_NE(*v2, *model) << "another revision is another entry";
  auto missing = (*storage)->Localize("hf://org/absent", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("config.json"), std::string::npos) << missing.status();
  EXPECT_EQ((*storage)->Localize("hf://just-a-name", {}).status().code(), absl::StatusCode::kInvalidArgument);
  unsetenv("HF_ENDPOINT");
}

TEST(Hub, AShardCutShortIsResumed) {
  TempDir dir;
  HubLayout(dir / "hub", "org/tiny", "main");
  const std::string shard = "/org/tiny/resolve/main/model-00002-of-00002.safetensors";
  HttpPeer peer(dir / "hub", dir.path(), {"--cut", shard + ":1000"});
  setenv("HF_ENDPOINT", peer.url().c_str(), 1);
  auto model = (*FileSystemFor("hf://org/tiny", Options(dir / "work")))->Localize("hf://org/tiny", {});
  unsetenv("HF_ENDPOINT");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(ReadFile(*model + "/model-00002-of-00002.safetensors").value(),
            ReadFile(dir / ("hub" + shard)).value());
  int ranged = 0;
  for (const auto& r : peer.Requests()) ranged += r == "GET " + shard + " bytes=1000-";
  EXPECT_EQ(ranged, 1);
}

TEST(DownloadCache, EvictsTheLeastRecentlyUsedEntriesPastItsBound) {
  TempDir dir;
  DownloadCache cache(dir / "cache", 2500);
  auto fill = [](int bytes) {
    return [bytes](const std::string& d) {
      std::ofstream(d + "/f", std::ios::binary) << std::string(bytes, 'x');
      return absl::OkStatus();
    };
  };
  auto a = cache.Get("a", fill(1000));
  auto b = cache.Get("b", fill(1000));
  bool hit = false;
  ASSERT_TRUE(cache.Get("a", fill(1000), &hit).ok());
  EXPECT_TRUE(hit);
  auto c = cache.Get("c", fill(1000));  // over the bound: b, used least recently, goes
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(fs::exists(*a));
  EXPECT_FALSE(fs::exists(*b));
  EXPECT_TRUE(fs::exists(*c));
  auto failed = cache.Get("d", [](const std::string&) { return absl::UnavailableError("peer gone"); });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(cache.Get("d", fill(10), &hit).ok());
  EXPECT_FALSE(hit) << "a failed fetch leaves nothing behind";
}

// The attack of issue 18: a job wrote its output over another team's cache entry, whose next job
// pruned the wrong model. An entry is used only as it was fetched.
TEST(DownloadCache, AnEntryChangedSinceItsFetchIsFetchedAgain) {
  TempDir dir;
  DownloadCache cache(dir / "cache", int64_t{1} << 30);
  int fetches = 0;
  auto fetch = [&](const std::string& d) {
    ++fetches;
    fs::create_directories(d + "/sub");
    std::ofstream(d + "/model.safetensors", std::ios::binary) << "the real weights";
    std::ofstream(d + "/sub/tokenizer.json") << "{}";
    return absl::OkStatus();
  };
  auto entry = cache.Get("hf://org/model@main", fetch);
  ASSERT_TRUE(entry.ok()) << entry.status();
  bool hit = false;
  ASSERT_TRUE(cache.Get("hf://org/model@main", fetch, &hit).ok());
  EXPECT_TRUE(hit);
  EXPECT_EQ(fetches, 1);
  const std::vector<std::function<void()>> tamperings = {
      [&] { std::ofstream(*entry + "/model.safetensors", std::ios::binary) << "the wrong weight"; },  // same size
      [&] { std::ofstream(*entry + "/extra.json") << "{}"; },
      [&] {
        fs::remove(*entry + "/sub/tokenizer.json");
        fs::create_symlink("/etc/hostname", *entry + "/sub/tokenizer.json");
      },
      [&] { fs::remove(*entry + "/model.safetensors"); },
  };
  for (size_t i = 0; i < tamperings.size(); ++i) {
    tamperings[i]();
    auto again = cache.Get("hf://org/model@main", fetch, &hit);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(hit) << "tampering " << i;
    EXPECT_EQ(fetches, static_cast<int>(i) + 2) << "tampering " << i;
    EXPECT_EQ(ReadFile(*again + "/model.safetensors").value(), "the real weights");
    EXPECT_FALSE(fs::exists(*again + "/extra.json"));
    EXPECT_FALSE(fs::is_symlink(*again + "/sub/tokenizer.json"));
  }
  // A fetch that leaves a link behind is refused, not cached.
  auto linked = cache.Get("hf://org/linked@main", [](const std::string& d) {
    fs::create_symlink("/etc/hostname", d + "/config.json");
    return absl::OkStatus();
  });
  EXPECT_EQ(linked.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(linked.status().message().find("config.json is not a regular file"), std::string::npos) << linked.status();
}

// --- a tenant's policy and keys in the storage layer (issue 18) --------------------------------

std::shared_ptr<const TenantUriPolicy> Policy(std::vector<std::string> allow, bool private_networks) {
  auto policy = std::make_shared<TenantUriPolicy>();
  policy->tenant = "team-a";
  for (const auto& prefix : allow) policy->allow.push_back(CanonicalUri(prefix));
  policy->private_networks = private_networks;
  return policy;
}

// Workers reached internal services through any http:// address a client named. Under a policy
// without private_networks, a loopback address is refused as the connection opens; with it, a
// redirect is followed only to where the policy allows.
TEST(UriPolicyInStorage, HttpConnectionsAndRedirectsStayWithinTheTenantsPolicy) {
  TempDir dir;
  fs::create_directories(dir / "www/other");
  std::ofstream(dir / "www/data.bin", std::ios::binary) << "public data";
  std::ofstream(dir / "www/other/secret.bin", std::ios::binary) << "internal secret";
  HttpPeer peer(dir / "www", dir.path(), {"--redirect", "/jump=/other/secret.bin", "--redirect", "/inside=/data.bin"});
  StorageOptions options = Options(dir / "work");
  options.policy = Policy({peer.url()}, /*private_networks=*/false);
  auto refused = (*FileSystemFor(peer.url() + "/data.bin", options))->Localize(peer.url() + "/data.bin", {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("refused a connection to 127.0.0.1, a loopback, private or link-local "
                                            "address"),
            std::string::npos)
      << refused.status();
  EXPECT_TRUE(peer.Requests().empty()) << "nothing reached the address";

  options.policy = Policy({peer.url() + "/data.bin", peer.url() + "/inside", peer.url() + "/jump"}, true);
  auto storage = *FileSystemFor(peer.url() + "/inside", options);
  auto inside = storage->Localize(peer.url() + "/inside", {});
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(ReadFile(*inside).value(), "public data");
  auto jump = storage->Localize(peer.url() + "/jump", {});
  EXPECT_EQ(jump.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(jump.status().message().find(absl::StrCat("refused a redirect to ", peer.url(),
                                                      "/other/secret.bin, outside the URI policy")),
            std::string::npos)
      << jump.status();
  for (const auto& r : peer.Requests()) EXPECT_EQ(r.find("/other/secret.bin"), std::string::npos) << r;
}

// A model directory inside the allowed roots held a link to a file outside them, and the engine read
// it (and copied side files through such links into the output).
TEST(UriPolicyInStorage, ALinkInsideAModelDirectoryMayNotLeadOutOfTheRoots) {
  TempDir dir;
  fs::create_directories(dir / "allowed/team-a/model");
  fs::create_directories(dir / "allowed/team-b");
  std::ofstream(dir / "allowed/team-a/model/config.json") << "{}";
  std::ofstream(dir / "secret.json") << "{\"key\": \"the operator's\"}";
  fs::create_symlink(dir / "allowed/team-a/model/config.json", dir / "allowed/team-a/model/inside.json");
  LocalFileSystem roots({dir / "allowed"});
  EXPECT_TRUE(roots.Localize("file://" + (dir / "allowed/team-a/model"), {}).ok()) << "a link within the roots is fine";
  fs::create_symlink(dir / "secret.json", dir / "allowed/team-a/model/special_tokens_map.json");
  auto out = roots.Localize("file://" + (dir / "allowed/team-a/model"), {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(out.status().message().find("special_tokens_map.json is a symbolic link to " + (dir / "secret.json") +
                                        ", outside the allowed file roots"),
            std::string::npos)
      << out.status();
  // A tenant's own file:// prefixes confine it further than the operator's roots.
  fs::remove(dir / "allowed/team-a/model/special_tokens_map.json");
  StorageOptions options = Options(dir / "work");
  options.allowed_file_roots = {dir / "allowed"};
  options.policy = Policy({"file://" + (dir / "allowed/team-b")}, false);
  auto other_team = (*FileSystemFor("file:///x", options))->Localize("file://" + (dir / "allowed/team-a/model"), {});
  EXPECT_EQ(other_team.status().code(), absl::StatusCode::kPermissionDenied);
}

// A job uses its tenant's keys, never the worker's; a private model one team's token fetched is no
// cache hit for another.
TEST(UriPolicyInStorage, AJobUsesItsTenantsTokenAndItsOwnCacheEntries) {
  TempDir dir;
  HubLayout(dir / "hub", "org/private", "main");
  HttpPeer peer(dir / "hub", dir.path());
  setenv("HF_ENDPOINT", peer.url().c_str(), 1);
  setenv("HF_TOKEN", "hf_the_workers_own", 1);
  StorageOptions team_a = Options(dir / "work");
  team_a.credentials = StorageCredentials{};
  team_a.credentials->hf_token = "hf_team_a";
  ASSERT_TRUE((*FileSystemFor("hf://org/private", team_a))->Localize("hf://org/private", {}).ok());
  const size_t fetched = peer.Requests().size();
  for (const auto& r : peer.Requests()) EXPECT_NE(r.find(" Bearer hf_team_a"), std::string::npos) << r;
  StorageOptions team_b = Options(dir / "work");
  team_b.credentials = StorageCredentials{};  // named in no entry: anonymous
  ASSERT_TRUE((*FileSystemFor("hf://org/private", team_b))->Localize("hf://org/private", {}).ok());
  ASSERT_EQ(peer.Requests().size(), 2 * fetched) << "team-b's job fetched for itself instead of hitting team-a's entry";
  for (size_t i = fetched; i < peer.Requests().size(); ++i) {
    EXPECT_EQ(peer.Requests()[i].find("Bearer"), std::string::npos) << "not the worker's HF_TOKEN: " << peer.Requests()[i];
  }
  unsetenv("HF_TOKEN");
  unsetenv("HF_ENDPOINT");

  // S3: the tenant's keys over the environment's endpoint.
  setenv("AWS_ACCESS_KEY_ID", "worker-key", 1);
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  StorageCredentials keys;
  keys.aws_access_key_id = "team-a-key";
  keys.aws_secret_access_key = "team-a-secret";
  const S3Config config = S3Config::For(keys);
  EXPECT_EQ(config.access_key, "team-a-key");
  EXPECT_EQ(config.secret_key, "team-a-secret");
  EXPECT_EQ(config.endpoint, "http://127.0.0.1:1");
  EXPECT_EQ(S3Config::For(std::nullopt).access_key, "worker-key");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_ENDPOINT_URL");

  auto parsed = ParseTenantCredentials(R"({"tenants": {"team-a": {"hf_token": "x", "aws_region": "eu"}}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("team-a").hf_token, "x");
  EXPECT_EQ(ParseTenantCredentials(R"({"tenants": {"team-a": {"hf_tokn": "x"}}})").status().message(),
            "tenants.team-a.hf_tokn: unknown field");
}

TEST(S3, PutsAndFetchesObjectsAndPrefixes) {
  TempDir dir;
  S3Peer s3(dir.path());
  ASSERT_NE(s3.port(), 0);
  auto storage = *FileSystemFor("s3://models/x", Options(dir / "work"));
  std::ofstream(dir / "config.json") << "{\"model_type\": \"llama\"}";
  std::ofstream(dir / "weights.bin", std::ios::binary) << Bytes(100000);
  ASSERT_TRUE(storage->Put(dir / "config.json", "s3://models/m/config.json").ok());
  ASSERT_TRUE(storage->Put(dir / "weights.bin", "s3://models/m/weights.bin").ok());
  auto file = storage->Localize("s3://models/m/weights.bin", {});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(ReadFile(*file).value(), Bytes(100000));
  auto model = storage->Localize("s3://models/m", {});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(ReadFile(*model + "/config.json").value(), ReadFile(dir / "config.json").value());
  EXPECT_EQ(ReadFile(*model + "/weights.bin").value(), Bytes(100000));
  ASSERT_TRUE(storage->Delete("s3://models/m/config.json").ok());
  EXPECT_EQ(storage->Localize("s3://models/m/config.json", {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(storage->Delete("s3://models/m/never-there").ok());
}

TEST(S3, UploadsLargeFilesInSeveralPartsInParallel) {
  TempDir dir;
  S3Peer s3(dir.path());
  StorageOptions options = Options(dir / "work");
  options.s3_part_bytes = 1 << 20;
  const std::string data = Bytes((7 << 19) + 123);  // 3.5 MiB: 4 parts
  std::ofstream(dir / "big.bin", std::ios::binary) << data;
  auto storage = *FileSystemFor("s3://models/big.bin", options);
  ASSERT_TRUE(storage->Put(dir / "big.bin", "s3://models/big.bin").ok());
  // The store saw four parts of one upload, then the object.
  const std::string log = s3.Log();
  int parts = 0;
  for (size_t at = 0; (at = log.find("Stored part ", at)) != std::string::npos; ++at) ++parts;
  EXPECT_EQ(parts, 4) << log;
  EXPECT_NE(log.find("Stored object \"big.bin\""), std::string::npos) << log;
  auto back = storage->Localize("s3://models/big.bin", {});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Sha256File(*back).value(), Sha256Hex(data));
}

TEST(S3, MissingBucketsAndKeysAreNotFound) {
  TempDir dir;
  S3Peer s3(dir.path());
  auto storage = *FileSystemFor("s3://models/x", Options(dir / "work"));
  auto no_bucket = storage->Localize("s3://no-such-bucket/model", {});
  EXPECT_EQ(no_bucket.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_bucket.status().message().find("NoSuchBucket"), std::string::npos) << no_bucket.status();
  auto no_key = storage->Localize("s3://models/absent", {});
  EXPECT_EQ(no_key.status().code(), absl::StatusCode::kNotFound);
  std::ofstream(dir / "f") << "x";
  auto put = storage->Put(dir / "f", "s3://no-such-bucket/f");
  EXPECT_EQ(put.code(), absl::StatusCode::kNotFound) << put;
}

TEST(S3, AStoreKilledMidUploadFailsTheUploadAndLeavesNoObject) {
  TempDir dir;
  S3Peer s3(dir.path());
  StorageOptions options = Options(dir / "work");
  options.s3_part_bytes = 1 << 20;
  std::ofstream(dir / "big.bin", std::ios::binary) << Bytes(48 << 20);  // 48 parts
  auto storage = *FileSystemFor("s3://models/big.bin", options);
  absl::Status put;
  std::thread upload([&] { put = storage->Put(dir / "big.bin", "s3://models/big.bin"); });
  for (int i = 0; i < 2000 && s3.Log().find("Stored part ") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  s3.Stop();
  upload.join();
  EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable) << put;
  s3.Restart();
  EXPECT_EQ(storage->Localize("s3://models/big.bin", {}).status().code(), absl::StatusCode::kNotFound);
}

TEST(S3, AStoreThatIsGoneIsRetriedThenUnavailable) {
  TempDir dir;
  S3Peer s3(dir.path());
  auto storage = *FileSystemFor("s3://models/x", Options(dir / "work"));
  s3.Stop();
  std::ofstream(dir / "f") << "x";
  auto put = storage->Put(dir / "f", "s3://models/f");
  EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable) << put;
  EXPECT_NE(put.message().find("failed after 5 attempts"), std::string::npos) << put;
}

TEST(DownloadCache, TwoJobsWantingTheSameModelFetchItOnce) {
  TempDir dir;
  DownloadCache cache(dir / "cache", int64_t{1} << 30);
  std::atomic<int> fetches{0};
  auto slow_fetch = [&](const std::string& d) {
    ++fetches;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the second job arrives meanwhile
    std::ofstream(d + "/f") << "model";
    return absl::OkStatus();
  };
  absl::StatusOr<std::string> first, second;
  std::thread a([&] { first = cache.Get("hf://org/m@main", slow_fetch); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread b([&] { second = cache.Get("hf://org/m@main", slow_fetch); });
  a.join();
  b.join();
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(fetches.load(), 1) << "the second waited for the first one's download";
}

// Stat, ReadRange and List on one scheme: a file of `data` at `file`, another beside it.
void ExpectStatReadList(FileSystem& storage, const std::string& file, const std::string& dir_uri,
                        const std::string& data, bool lists) {
  auto info = storage.Stat(file);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_EQ(storage.ReadRange(file, 1000, 10).value(), data.substr(1000, 10));
  EXPECT_EQ(storage.ReadRange(file, data.size() - 5, 100).value(), data.substr(data.size() - 5)) << "at the end";
  EXPECT_EQ(storage.Stat(dir_uri + "/absent").status().code(), absl::StatusCode::kNotFound);
  auto listed = storage.List(dir_uri);
  if (!lists) {
    EXPECT_EQ(listed.status().code(), absl::StatusCode::kUnimplemented);
    return;
  }
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].uri, dir_uri + "/a.bin");
  EXPECT_EQ((*listed)[0].size, static_cast<int64_t>(data.size()));
  EXPECT_EQ((*listed)[1].uri, dir_uri + "/sub/b.txt");
}

TEST(Verbs, StatReadRangeAndListOnEveryScheme) {
  TempDir dir;
  const std::string data = Bytes(5000);
  fs::create_directories(dir / "www/sub");
  std::ofstream(dir / "www/a.bin", std::ios::binary) << data;
  std::ofstream(dir / "www/sub/b.txt") << "b";
  auto local = *FileSystemFor("file:///", Options(dir / "work"));
  ExpectStatReadList(*local, "file://" + dir / "www/a.bin", "file://" + dir / "www", data, true);
  HttpPeer peer(dir / "www", dir.path());
  auto http = *FileSystemFor(peer.url(), Options(dir / "work"));
  ExpectStatReadList(*http, peer.url() + "/a.bin", peer.url(), data, false);
  S3Peer s3(dir.path());
  auto s3fs = *FileSystemFor("s3://models", Options(dir / "work"));
  ASSERT_TRUE(s3fs->Put(dir / "www/a.bin", "s3://models/d/a.bin").ok());
  ASSERT_TRUE(s3fs->Put(dir / "www/sub/b.txt", "s3://models/d/sub/b.txt").ok());
  ExpectStatReadList(*s3fs, "s3://models/d/a.bin", "s3://models/d", data, true);
}

TEST(FileRoots, RefuseLocalPathsOutsideTheAllowedRoots) {
  TempDir dir;
  fs::create_directories(dir / "models/m");
  fs::create_directories(dir / "secret");
  fs::create_symlink(dir / "secret", dir / "models/escape");
  const std::vector<std::string> roots = {dir / "models"};
  EXPECT_TRUE(CheckFileRoots("file://" + (dir / "models/m"), roots).ok());
  EXPECT_TRUE(CheckFileRoots("file://" + (dir / "models/new/out"), roots).ok()) << "not yet existing";
  EXPECT_EQ(CheckFileRoots("file://" + (dir / "secret"), roots).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckFileRoots("file://" + (dir / "models/../secret"), roots).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckFileRoots("file://" + (dir / "models/escape/x"), roots).code(),
            absl::StatusCode::kPermissionDenied)
      << "a symbolic link out of the root";
  EXPECT_EQ(CheckFileRoots("file://" + (dir / "models-other"), roots).code(),
            absl::StatusCode::kPermissionDenied)
      << "a sibling sharing the prefix";
  EXPECT_TRUE(CheckFileRoots("file:///anywhere", {}).ok()) << "no roots: no restriction";
  auto storage = FileSystemFor("file:///x", [&] {
    StorageOptions o;
    o.allowed_file_roots = roots;
    return o;
  }());
  EXPECT_EQ((*storage)->Localize("file://" + (dir / "secret"), {}).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// Publishing a finished file to file:// moves it: on the same filesystem by rename (the bytes are
// not written twice), never outside the roots, and over an older file at once.
TEST(LocalFiles, MoveRenamesIntoPlaceWithinTheRoots) {
  TempDir dir;
  fs::create_directories(dir / "models/out");
  ASSERT_TRUE(WriteFileAtomically(dir / "scratch.bin", "new bytes").ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "models/out/old.bin", "old bytes").ok());
  struct stat before {};
  ASSERT_EQ(::stat((dir / "scratch.bin").c_str(), &before), 0);
  auto storage = FileSystemFor("file:///x", [&] {
    StorageOptions o;
    o.allowed_file_roots = {dir / "models"};
    return o;
  }());
  ASSERT_TRUE(storage.ok());
  ASSERT_TRUE((*storage)->Move(dir / "scratch.bin", "file://" + (dir / "models/out/old.bin")).ok());
  EXPECT_EQ(ReadFile(dir / "models/out/old.bin").value(), "new bytes");
  EXPECT_FALSE(fs::exists(dir / "scratch.bin"));
  struct stat after {};
  ASSERT_EQ(::stat((dir / "models/out/old.bin").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "renamed, not copied";

  ASSERT_TRUE(WriteFileAtomically(dir / "scratch2.bin", "x").ok());
  EXPECT_EQ((*storage)->Move(dir / "scratch2.bin", "file://" + (dir / "elsewhere.bin")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(fs::exists(dir / "scratch2.bin")) << "a refused move leaves the file";
}

}  // namespace
}  // namespace shears::worker
