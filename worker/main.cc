// shears-worker: leases pruning jobs from shears-server, or runs one job from a file.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iterator>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/channel.h"
#include "common/command_line.h"
#include "common/files.h"
#include "common/job_spec.h"
#include "common/metrics_endpoint.h"
#include "common/proto_json.h"
#include "common/status_macros.h"
#include "common/termination.h"
#include "worker/engine/runtime/runtime.h"
#include "worker/attempt/engine_main.h"
#include "worker/engine/tokenize.h"
#include "worker/job_runner.h"
#include "worker/worker.h"

namespace {

constexpr char kUsage[] = R"(usage: shears-worker --server HOST:PORT [flags]
       shears-worker run-local --spec SPEC.json [flags]
       shears-worker tokenize --model DIR [--file TEXT]   (stdin without --file)
  (shears-worker attempt [flags] is the engine process the worker starts for each job, over a pipe)
  --server HOST:PORT   shears-server to lease jobs from
  --spec PATH          run-local: a JobSpec in protobuf JSON
  --device DEV         cpu, cuda or cuda:N (default: cuda:0 when available, else cpu)
  --threads N          LibTorch intra-op threads (default: all cores)
  --work-dir DIR       scratch space (default /tmp/shears-worker)
  --worker-id ID       name shown in job events (default host-pid)
  --poll-wait DURATION long-poll length when idle (default 20s)
  --max-message-bytes N  the largest RPC message sent or taken (default 16 MiB; as the server's)
  --job-id ID          run-local: names the scratch directory; the same id resumes a killed run
  --model DIR          tokenize: a local model directory (its tokenizer.json or tokenizer.model)
  --file PATH          tokenize: the text to encode; prints {"tokenizer", "note", "ids"} as JSON
  --allow-file-root DIR file:// URIs must lie under DIR (repeatable; none given: anywhere)
  --cache-max-bytes N  bound of the download cache in the work dir (default 100 GiB)
  --max-download-bytes N  the largest file a job may fetch over the network (default: the cache's
                       bound); a larger one fails the job naming the limit
  --max-dataset-bytes N  the largest calibration, evaluation or fine-tuning file (default 16 GiB)
  --s3-part-bytes N    s3:// uploads larger than this go up in parts of this size (default 8 MiB;
                       AWS wants at least 5 MiB)
  --max-tensor-memory N  bytes the engine's large CPU tensors may hold at once (default 0: no
                       limit); a job that needs more fails with the sizes, the worker lives on.
                       Set it below the container's memory limit, which kills the whole worker
  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)
  --metrics-port-file PATH    write the metrics port here once serving
  --outage-patience DURATION  how long events and a job's outcome keep retrying a server that
                       does not answer (default 15m); the server gives running leases a lease TTL
                       of grace when it restarts, so the job goes on where it was
  --uri-policy PATH    which URIs each tenant's jobs may name (the server's file; docs/security.md),
                       checked again here before a byte moves
  --tenant-credentials PATH  each tenant's storage keys ({"tenants": {"team-a": {"aws_access_key_id",
                       "aws_secret_access_key", "aws_session_token", "aws_region", "aws_endpoint_url",
                       "hf_token"}}}): a job uses its tenant's only, never the worker's environment
  --token-file PATH    the bearer token the worker calls the server with (or --token, or
                       $SHEARS_TOKEN); its identity needs the worker role
  --tls-ca PATH        dial the server over TLS, trusting this PEM CA
  --tls-cert PATH      mutual TLS: the worker's certificate (and --tls-key PATH, its key)
  --tls-key PATH
)";

int Fail(const std::string& message) {
  std::cerr << "shears-worker: " << message << "\n";
  return 2;
}

std::string DefaultWorkerId() {
  char host[256] = "worker";
  gethostname(host, sizeof host - 1);
  return absl::StrCat(host, "-", getpid());
}

// Prints a job's events as plain lines; batch jobs and debugging read them.
void PrintEvent(const shears::v1::JobEvent& event) {
  if (event.has_progress()) {
    std::cout << "[" << static_cast<int>(event.progress().fraction() * 100) << "%] " << event.progress().stage()
              << ": " << event.progress().message() << std::endl;
  } else if (event.has_layer()) {
    const auto& layer = event.layer();
    std::cout << "  " << layer.name() << ": sparsity " << layer.achieved_sparsity();
    if (layer.has_reconstruction_error()) std::cout << ", reconstruction error " << layer.reconstruction_error();
    std::cout << std::endl;
  } else if (event.has_redundancy()) {
    std::cout << "  Block Influence (" << event.redundancy().model() << "):";
    for (const auto& block : event.redundancy().blocks()) std::cout << " " << block.block_influence();
    std::cout << std::endl;
  } else if (event.has_evaluation()) {
    const auto& e = event.evaluation();
    std::cout << "perplexity: dense " << e.dense_perplexity() << ", pruned " << e.pruned_perplexity() << " ("
              << e.windows() << " windows of " << e.seq_len() << " tokens of " << e.dataset_uri() << ")" << std::endl;
  }
}

int RunLocal(const shears::CommandLine& cl, const shears::worker::EngineSettings& settings) {
  auto path = cl.Get("spec");
  if (!path) return Fail("run-local needs --spec SPEC.json");
  shears::v1::JobSpec spec;
  if (auto st = shears::ReadJsonFile(*path, &spec); !st.ok()) return Fail(std::string(st.message()));
  shears::ApplySpecDefaults(spec);
  if (auto st = shears::ValidateSpec(spec); !st.ok()) return Fail(std::string(st.message()));

  shears::worker::RunContext context;
  // A stable --job-id lets a re-run after a crash resume from the checkpoint in --work-dir.
  context.job_id = cl.GetOr("job-id", absl::StrCat("local-", getpid()));
  context.work_dir = settings.work_dir;
  context.storage = settings.storage;
  context.device = settings.device;
  context.max_dataset_bytes = settings.max_dataset_bytes;
  context.on_event = PrintEvent;
  static std::atomic<bool> stop{false};
  shears::OnTermination([](int sig) {
    std::cerr << "shears-worker: signal " << sig << ", stopping at the next block" << std::endl;
    stop = true;
  });
  context.cancelled = [] { return stop.load(); };
  auto result = shears::worker::RunJob(spec, context);
  if (!result.ok()) {
    std::cerr << "shears-worker: job failed: " << result.status().message() << std::endl;
    return 1;
  }
  std::cout << shears::ToJson(*result);
  return 0;
}

// The engine's settings from the flags: the worker reads them once to check them, and each engine
// process reads them again (the policy and credential files included, so a rotated key is used
// from the next attempt on).
absl::StatusOr<shears::worker::EngineSettings> EngineSettingsFrom(const shears::CommandLine& cl) {
  shears::worker::EngineSettings settings;
  settings.device = cl.GetOr("device", shears::engine::DefaultDevice());
  auto threads = cl.GetInt("threads", std::max(1u, std::thread::hardware_concurrency()));
  if (!threads.ok()) return threads.status();
  auto tensor_memory = cl.GetInt("max-tensor-memory", 0);
  if (!tensor_memory.ok()) return tensor_memory.status();
  SHEARS_RETURN_IF_ERROR(
      shears::engine::ConfigureRuntime(static_cast<int>(*threads), settings.device, *tensor_memory));
  settings.work_dir = cl.GetOr("work-dir", "/tmp/shears-worker");
  auto& storage = settings.storage;
  storage.allowed_file_roots = cl.GetAll("allow-file-root");
  storage.cache_dir = settings.work_dir;
  SHEARS_ASSIGN_OR_RETURN(storage.cache_max_bytes, cl.GetInt("cache-max-bytes", storage.cache_max_bytes));
  SHEARS_ASSIGN_OR_RETURN(storage.s3_part_bytes, cl.GetInt("s3-part-bytes", storage.s3_part_bytes));
  SHEARS_ASSIGN_OR_RETURN(storage.max_download_bytes, cl.GetInt("max-download-bytes", storage.cache_max_bytes));
  SHEARS_ASSIGN_OR_RETURN(settings.max_dataset_bytes, cl.GetInt("max-dataset-bytes", settings.max_dataset_bytes));
  if (storage.max_download_bytes < 1 || settings.max_dataset_bytes < 1) {
    return absl::InvalidArgumentError("--max-download-bytes and --max-dataset-bytes must be positive");
  }
  if (storage.s3_part_bytes < 1024) return absl::InvalidArgumentError("--s3-part-bytes must be at least 1024");
  if (auto path = cl.Get("uri-policy")) {
    SHEARS_ASSIGN_OR_RETURN(settings.uri_policy, shears::UriPolicy::Load(*path));
  }
  if (auto path = cl.Get("tenant-credentials")) {
    SHEARS_ASSIGN_OR_RETURN(settings.tenant_credentials, shears::worker::LoadTenantCredentials(*path));
  }
  return settings;
}

// The ids Shears gives a text, as JSON, for checking against another tokenizer.
int Tokenize(const shears::CommandLine& cl) {
  auto model = cl.Get("model");
  if (!model) return Fail("tokenize needs --model DIR");
  std::string text;
  if (auto file = cl.Get("file")) {
    auto read = shears::ReadFile(*file);
    if (!read.ok()) return Fail(std::string(read.status().message()));
    text = std::move(*read);
  } else {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  auto tokenized = shears::engine::Tokenize(*model, text);
  if (!tokenized.ok()) return Fail(std::string(tokenized.status().message()));
  std::cout << nlohmann::json{{"tokenizer", tokenized->file}, {"note", tokenized->note}, {"ids", tokenized->ids}}.dump()
            << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  shears::BlockTerminationSignals();
  // A pipe whose engine process died answers EPIPE instead of ending the worker.
  signal(SIGPIPE, SIG_IGN);
  auto cl = shears::CommandLine::Parse(argc, argv, {"help"});
  if (!cl.ok()) return Fail(std::string(cl.status().message()));
  if (cl->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (auto st = cl->CheckKnown({"server", "spec", "device", "threads", "work-dir", "worker-id", "poll-wait",
                                "max-message-bytes", "job-id", "model", "file",
                                "allow-file-root", "cache-max-bytes", "max-download-bytes", "max-dataset-bytes", "s3-part-bytes", "max-tensor-memory", "metrics-listen",
                                "metrics-port-file", "token", "token-file", "tls-ca", "tls-cert", "tls-key", "uri-policy",
                                "tenant-credentials", "outage-patience", "help"});
      !st.ok()) {
    return Fail(absl::StrCat(st.message(), "\n", kUsage));
  }
  const auto& words = cl->words();
  if (!words.empty() && words[0] == "tokenize") return Tokenize(*cl);
  auto settings = EngineSettingsFrom(*cl);
  if (!settings.ok()) return Fail(std::string(settings.status().message()));
  if (!words.empty() && words[0] == "run-local") return RunLocal(*cl, *settings);
  if (!words.empty() && words[0] == "attempt") shears::worker::ServeAttempt(*settings);
  if (!words.empty()) return Fail(absl::StrCat("unknown command '", words[0], "'\n", kUsage));

  shears::worker::WorkerOptions options;
  auto server = cl->Get("server");
  if (!server) return Fail(absl::StrCat("--server is required\n", kUsage));
  options.server = *server;
  options.worker_id = cl->GetOr("worker-id", DefaultWorkerId());
  options.device = settings->device;
  options.work_dir = settings->work_dir;
  // Each attempt in an engine process of its own, configured by this worker's flags.
  options.engine_argv = {argv[0], "attempt"};
  options.engine_argv.insert(options.engine_argv.end(), argv + 1, argv + argc);
  auto poll = cl->GetDuration("poll-wait", options.poll_wait);
  if (!poll.ok()) return Fail(std::string(poll.status().message()));
  options.poll_wait = *poll;
  auto patience = cl->GetDuration("outage-patience", options.outage_patience);
  if (!patience.ok()) return Fail(std::string(patience.status().message()));
  options.outage_patience = *patience;
  auto max_bytes = shears::MaxMessageBytesFlag(*cl, options.max_message_bytes);
  if (!max_bytes.ok()) return Fail(std::string(max_bytes.status().message()));
  options.max_message_bytes = *max_bytes;
  auto connection = shears::ChannelFlags(*cl, options.server, options.max_message_bytes);
  if (!connection.ok()) return Fail(std::string(connection.status().message()));
  auto channel = shears::OpenChannel(*connection);
  if (!channel.ok()) return Fail(std::string(channel.status().message()));
  options.channel = *channel;
  options.token = connection->token;
  auto metrics = std::make_shared<shears::worker::WorkerMetrics>(settings->device);
  options.metrics = metrics.get();
  options.storage.counters = metrics->Counters();
  std::unique_ptr<shears::MetricsEndpoint> endpoint;
  if (auto listen = cl->Get("metrics-listen")) {
    auto started = shears::MetricsEndpoint::Start(*listen, metrics);
    if (!started.ok()) return Fail(std::string(started.status().message()));
    endpoint = std::move(*started);
    std::cerr << "shears-worker: metrics on port " << endpoint->port() << std::endl;
    if (auto path = cl->Get("metrics-port-file")) {
      if (auto st = shears::WritePortFile(*path, endpoint->port()); !st.ok()) return Fail(std::string(st.message()));
    }
  }

  shears::worker::Worker worker(options);
  shears::OnTermination([&worker](int sig) {
    std::cerr << "shears-worker: signal " << sig << ", stopping" << std::endl;
    worker.Stop();
  });
  std::cerr << "shears-worker " << options.worker_id << ": serving " << options.server << " on " << settings->device
            << std::endl;
  worker.Run();
  return 0;
}
