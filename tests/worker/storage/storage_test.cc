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
#include "worker/storage/s3_filesystem.h"

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
