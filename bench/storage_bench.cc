// Download and upload throughput of the s3:// storage against s3rver on loopback, next to a plain
// curl of the same object (one signed PUT, one GET), so that Shears' own overhead shows as a ratio.
// Loopback measures the client and s3rver, not a network: the ratio is the figure to watch.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/format.h"
#include "common/sha256.h"
#include "tests/support/s3_peer.h"
#include "worker/storage/filesystem_factory.h"

namespace {

using shears::bench::Format;

double Seconds(const std::function<bool()>& run) {
  const auto start = std::chrono::steady_clock::now();
  if (!run()) return -1.0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string Curl(const std::string& endpoint, const std::string& args) {
  return absl::StrCat("curl -sf -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER ", args);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: storage_bench BUILD_DIR WORK_DIR [MiB]\n";
    return 2;
  }
  const std::string work = argv[2];
  const int mib = argc > 3 ? std::atoi(argv[3]) : 256;
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  const std::string file = work + "/object.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::mt19937_64 rng(0);
    std::string chunk(1 << 20, '\0');
    for (int i = 0; i < mib; ++i) {
      for (auto& c : chunk) c = static_cast<char>(rng());
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  const std::string sha = shears::Sha256File(file).value();
  shears::testing::S3Peer s3(work);
  if (s3.port() == 0) {
    std::cerr << "s3rver did not start (run scripts/install-test-peers.sh)\n";
    return 1;
  }
  shears::worker::StorageOptions options;
  options.cache_dir = work + "/cache";
  auto storage = shears::worker::FileSystemFor("s3://models/x", options).value();
  const std::string url = s3.endpoint() + "/models/curl.bin";

  const double shears_up = Seconds([&] { return storage->Put(file, "s3://models/shears.bin").ok(); });
  // The same upload as one PUT, which is what curl does: s3rver joins multipart uploads on disk
  // afterwards, which the single PUT does not pay.
  shears::worker::StorageOptions single = options;
  single.s3_part_bytes = int64_t{mib + 1} << 20;
  auto one_put = shears::worker::FileSystemFor("s3://models/x", single).value();
  const double shears_single = Seconds([&] { return one_put->Put(file, "s3://models/single.bin").ok(); });
  const double curl_up = Seconds([&] {
    return std::system(Curl(s3.endpoint(), absl::StrCat("-H 'x-amz-content-sha256: ", sha, "' -T ", file, " ", url))
                           .c_str()) == 0;
  });
  const double shears_down = Seconds([&] { return storage->Localize("s3://models/shears.bin", {}).ok(); });
  const double curl_down = Seconds([&] {
    return std::system(Curl(s3.endpoint(),
                            absl::StrCat("-H 'x-amz-content-sha256: "
                                         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' ",
                                         url))
                           .c_str()) == 0;
  });
  if (shears_up < 0 || shears_single < 0 || curl_up < 0 || shears_down < 0 || curl_down < 0) {
    std::cerr << "a transfer failed\n";
    return 1;
  }
  auto rate = [&](double s) { return Format("%.0f", mib / s); };
  std::cout << "\nS3 throughput against s3rver on loopback, one object of " << mib << " MiB "
            << "(Shears: multipart upload in 8 MiB parts, 4 at a time, sha256 of each part; download through the "
               "cache with sha256; curl: one signed PUT, one GET):\n\n"
            << "| transfer | Shears MiB/s | curl MiB/s | Shears / curl |\n|---|---:|---:|---:|\n"
            << "| upload, multipart | " << rate(shears_up) << " | " << rate(curl_up) << " | "
            << Format("%.2f", curl_up / shears_up) << " |\n"
            << "| upload, one PUT | " << rate(shears_single) << " | " << rate(curl_up) << " | "
            << Format("%.2f", curl_up / shears_single) << " |\n"
            << "| download | " << rate(shears_down) << " | " << rate(curl_down) << " | "
            << Format("%.2f", curl_down / shears_down) << " |\n";
  std::filesystem::remove_all(work);
  return 0;
}
