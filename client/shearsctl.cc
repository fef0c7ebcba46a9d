// shearsctl: the command-line client of shears.v1.Pruning.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/channel.h"
#include "common/command_line.h"
#include "common/printable_output.h"
#include "common/proto_json.h"
#include "common/proto_time.h"
#include "common/rpc_limits.h"
#include "shears/v1/pruning.grpc.pb.h"

namespace {

using shears::CommandLine;
namespace v1 = shears::v1;

constexpr char kUsage[] = R"(usage: shearsctl [global flags] COMMAND [flags]
commands:
  create   --spec FILE | --model URI --method M (--sparsity X | --nm N:M) --output URI
           [--calibration URI [--samples N] [--seq-len T]] [--format F] [--structure S]
           [--allocation A] [--width-multiple N] [--sublayers K] [--fine-tune URI [--steps N] [--distill]]
           [--low-rank ALGORITHM]
           [--search-base M [--search-configurations N] [--search-budget N]]
           [--seed N] [--label K=V ...] [--request-id ID] [--wait]
  get      JOB_ID
  list     [--state STATE] [--page-size N] [--page-token TOKEN]
  cancel   JOB_ID
  watch    JOB_ID [--after SEQUENCE]
global flags (before or after the command):
  --server HOST:PORT   default $SHEARS_SERVER or localhost:50051
  --timeout DURATION   deadline of each call (default 30s; watch: 24h)
  --json               print protobuf JSON
  --token TOKEN        bearer token of the caller's identity (or --token-file PATH, or $SHEARS_TOKEN)
  --tls-ca PATH        dial over TLS, trusting this PEM CA (--tls-cert/--tls-key add a client
                       certificate for mutual TLS)
names: methods as magnitude or METHOD_MAGNITUDE; states as running or JOB_STATE_RUNNING; formats
as sparse_bitmask or OUTPUT_FORMAT_SPARSE_BITMASK. --nm 2:4 sets STRUCTURE_N_M; --calibration
draws --samples windows (default 128) of --seq-len tokens (default 2048). --fine-tune gives
movement, GUM and FLOP their data (--steps, default 200); --low-rank is svd or flop.
--structure sublayers removes whole attention or MLP sublayers (block_influence, last_blocks or
random; --sublayers attention or mlp takes one kind only); --width-multiple rounds each FFN width
kept to a multiple (64 to 256 for real models). --structure attention_heads removes KV groups
(magnitude, random or activation; --allocation global merges KV heads per block instead).
--allocation owl gives each block of unstructured magnitude, wanda or sparsegpt pruning its own
sparsity by OWL's outlier shares, measured on the --calibration data.
--method predictor_search --search-base wanda searches per-layer sparsities (magnitude, wanda or
sparsegpt prune each configuration; with --structure ffn_neurons and magnitude, a share of FFN
neurons per block; --search-configurations measured, default 60; --search-budget scored by the
predictor, default 2000).
exit status: 0 ok; 1 a watched job did not succeed; 2 usage; 3 the server refused or failed.
)";

constexpr int kExitJobFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitRpc = 3;

int Usage(const std::string& message) {
  std::cerr << "shearsctl: " << message << "\n\n" << kUsage;
  return kExitUsage;
}

int RpcError(const grpc::Status& status) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                 "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                 "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = status.error_code();
  std::cerr << "shearsctl: " << (code >= 0 && code <= 16 ? kNames[code] : "ERROR") << ": " << status.error_message()
            << "\n";
  return kExitRpc;
}

// Accepts "magnitude", "METHOD_MAGNITUDE", "block-influence", ...
template <typename Enum>
bool ParseEnum(const std::string& text, const std::string& prefix, bool (*parse)(const std::string&, Enum*),
               Enum* out) {
  std::string name = absl::AsciiStrToUpper(text);
  std::replace(name.begin(), name.end(), '-', '_');
  if (name.rfind(prefix, 0) != 0) name = prefix + name;
  return parse(name, out);
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", shears::FromProtoTime(t), absl::LocalTimeZone());
}

// "0.5", or "2:4" for N:M.
std::string TargetOf(const v1::JobSpec& spec) {
  if (spec.structure() == v1::STRUCTURE_N_M) return absl::StrCat(spec.n_m().n(), ":", spec.n_m().m());
  return absl::StrCat(spec.target_sparsity());
}

void PrintJob(const v1::Job& job) {
  const auto& spec = job.spec();
  std::cout << "job       " << job.id() << "\n"
            << "state     " << v1::JobState_Name(job.state()) << " (attempt " << job.attempt_count() << ")"
            << (job.cancel_requested() && job.state() == v1::JOB_STATE_RUNNING ? ", cancellation requested" : "")
            << "\n"
            << "model     " << spec.model_uri() << "\n"
            << "method    " << v1::Method_Name(spec.method()) << " / " << v1::Structure_Name(spec.structure())
            << ", target " << TargetOf(spec) << "\n"
            << "output    " << spec.output().uri() << "\n"
            << "progress  " << job.progress().stage() << " " << static_cast<int>(job.progress().fraction() * 100)
            << "%\n"
            << "created   " << FormatTime(job.create_time()) << "\n";
  if (job.has_end_time()) std::cout << "ended     " << FormatTime(job.end_time()) << "\n";
  if (!job.error().empty()) std::cout << "error     " << job.error() << "\n";
  if (job.has_result()) {
    const auto& r = job.result();
    std::cout << "result    sparsity " << std::fixed << std::setprecision(4) << r.achieved_sparsity() << " ("
              << r.parameters_before() << " -> " << r.parameters_after() << " non-zero prunable parameters, "
              << r.layers_size() << " layers)\n";
    if (r.has_evaluation()) {
      const auto& e = r.evaluation();
      std::cout << "perplexity dense " << std::setprecision(3) << e.dense_perplexity() << " -> pruned "
                << e.pruned_perplexity() << " (" << e.windows() << " windows of " << e.seq_len() << " tokens of "
                << e.dataset_uri() << ")\n";
    }
    if (r.removed_blocks_size() > 0) std::cout << "removed   blocks " << absl::StrJoin(r.removed_blocks(), ", ") << "\n";
    if (r.removed_sublayers_size() > 0) {
      std::vector<std::string> sublayers;
      for (const auto& s : r.removed_sublayers()) sublayers.push_back(absl::StrCat(s.sublayer(), " of block ", s.block()));
      std::cout << "removed   " << absl::StrJoin(sublayers, ", ") << "\n";
    }
    if (r.has_search()) {
      const auto& search = r.search();
      std::cout << "search    " << v1::Method_Name(search.base_method()) << ", " << search.measured_configurations()
                << " measured, predictor rank correlation " << std::setprecision(3)
                << search.validation_rank_correlation() << ", held-out perplexity uniform " << search.uniform_score();
      if (search.has_owl_score()) std::cout << ", OWL " << search.owl_score();
      std::cout << " -> searched " << search.searched_score();
      if (search.has_uniform_perplexity()) std::cout << "; uniform model's perplexity " << search.uniform_perplexity();
      std::cout << "\n";
      for (const auto& b : search.sparsity()) {
        std::cout << "          block " << b.block() << ": attention " << b.attention() << ", mlp " << b.mlp() << "\n";
      }
    }
    if (r.has_owl()) {
      std::cout << "owl       M " << std::setprecision(3) << r.owl().outlier_multiple() << ", lambda "
                << r.owl().max_deviation() << "\n";
      for (const auto& b : r.owl().blocks()) {
        std::cout << "          block " << b.block() << ": outliers " << std::setprecision(4) << b.outlier_ratio()
                  << ", sparsity " << b.sparsity() << "\n";
      }
    }
    if (r.stage_times_size() > 0) {
      std::cout << "seconds  ";
      for (const auto& t : r.stage_times()) std::cout << " " << t.stage() << " " << std::setprecision(1) << t.seconds();
      std::cout << "\n";
    }
    for (const auto& a : r.artifacts()) {
      std::cout << "artifact  " << a.uri() << "  " << a.size_bytes() << " bytes  sha256 " << a.sha256() << "\n";
    }
  }
}

class Client {
 public:
  Client(const CommandLine& cl, std::shared_ptr<grpc::Channel> channel, std::string token, absl::Duration timeout,
         bool json)
      : cl_(cl), stub_(v1::Pruning::NewStub(std::move(channel))), token_(std::move(token)), timeout_(timeout), json_(json) {}

  int Create();
  int Get(const std::string& id);
  int List();
  int Cancel(const std::string& id);
  int Watch(const std::string& id, int64_t after);

 private:
  // Every call has a deadline and carries the token.
  void Prepare(grpc::ClientContext& context, absl::Duration timeout) const {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    shears::AddToken(context, token_);
  }
  int Print(const google::protobuf::Message& message, void (*human)(const v1::Job&)) const;

  const CommandLine& cl_;
  std::unique_ptr<v1::Pruning::Stub> stub_;
  const std::string token_;
  absl::Duration timeout_;
  bool json_;
};

int Client::Print(const google::protobuf::Message& message, void (*human)(const v1::Job&)) const {
  if (json_ || human == nullptr) {
    std::cout << shears::ToJson(message);
  } else {
    human(static_cast<const v1::Job&>(message));
  }
  return 0;
}

int Client::Create() {
  v1::CreateJobRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  if (auto path = cl_.Get("spec")) {
    if (auto st = shears::ReadJsonFile(*path, &spec); !st.ok()) return Usage(std::string(st.message()));
  }
  // Flags override or complete a spec file.
  if (auto v = cl_.Get("model")) spec.set_model_uri(*v);
  if (auto v = cl_.Get("output")) spec.mutable_output()->set_uri(*v);
  if (auto v = cl_.Get("method")) {
    v1::Method m;
    if (!ParseEnum<v1::Method>(*v, "METHOD_", v1::Method_Parse, &m)) return Usage("--method: unknown method " + *v);
    spec.set_method(m);
  }
  if (auto v = cl_.Get("structure")) {
    v1::Structure s;
    if (!ParseEnum<v1::Structure>(*v, "STRUCTURE_", v1::Structure_Parse, &s)) {
      return Usage("--structure: unknown structure " + *v);
    }
    spec.set_structure(s);
  }
  if (cl_.Has("sparsity")) {
    auto x = cl_.GetDouble("sparsity", 0);
    if (!x.ok()) return Usage(std::string(x.status().message()));
    spec.set_target_sparsity(*x);
  }
  if (auto v = cl_.Get("nm")) {
    std::vector<std::string> parts = absl::StrSplit(*v, ':');
    int n = 0, m = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &n) || !absl::SimpleAtoi(parts[1], &m)) {
      return Usage("--nm: expected N:M such as 2:4, got " + *v);
    }
    spec.set_structure(v1::STRUCTURE_N_M);
    spec.mutable_n_m()->set_n(n);
    spec.mutable_n_m()->set_m(m);
  }
  if (auto v = cl_.Get("calibration")) {
    auto samples = cl_.GetInt("samples", 128);
    auto seq_len = cl_.GetInt("seq-len", 2048);
    if (!samples.ok()) return Usage(std::string(samples.status().message()));
    if (!seq_len.ok()) return Usage(std::string(seq_len.status().message()));
    auto* calibration = spec.mutable_calibration();
    calibration->set_dataset_uri(*v);
    calibration->set_num_samples(static_cast<int32_t>(*samples));
    calibration->set_seq_len(static_cast<int32_t>(*seq_len));
  }
  if (auto v = cl_.Get("allocation")) {
    v1::Allocation a;
    if (!ParseEnum<v1::Allocation>(*v, "ALLOCATION_", v1::Allocation_Parse, &a)) {
      return Usage("--allocation: unknown allocation " + *v);
    }
    spec.set_allocation(a);
  }
  if (auto v = cl_.Get("sublayers")) {
    v1::Sublayers k;
    if (!ParseEnum<v1::Sublayers>(*v, "SUBLAYERS_", v1::Sublayers_Parse, &k)) {
      return Usage("--sublayers: unknown kind " + *v + " (all, attention or mlp)");
    }
    spec.set_sublayers(k);
  }
  if (cl_.Has("width-multiple")) {
    auto n = cl_.GetInt("width-multiple", 0);
    if (!n.ok()) return Usage(std::string(n.status().message()));
    spec.set_width_multiple(static_cast<int32_t>(std::clamp<int64_t>(*n, INT32_MIN, INT32_MAX)));
  }
  if (auto v = cl_.Get("fine-tune")) {
    auto steps = cl_.GetInt("steps", 0);
    if (!steps.ok()) return Usage(std::string(steps.status().message()));
    auto* tune = spec.mutable_fine_tune();
    tune->set_dataset_uri(*v);
    tune->set_steps(static_cast<int32_t>(*steps));
    tune->set_distill(cl_.Has("distill"));
  }
  if (auto v = cl_.Get("low-rank")) {
    v1::LowRankAlgorithm a;
    if (!ParseEnum<v1::LowRankAlgorithm>(*v, "LOW_RANK_", v1::LowRankAlgorithm_Parse, &a)) {
      return Usage("--low-rank: unknown algorithm " + *v + " (svd or flop)");
    }
    spec.mutable_low_rank()->set_algorithm(a);
  }
  if (auto v = cl_.Get("search-base")) {
    v1::Method m;
    if (!ParseEnum<v1::Method>(*v, "METHOD_", v1::Method_Parse, &m)) return Usage("--search-base: unknown method " + *v);
    auto measured = cl_.GetInt("search-configurations", 0);
    auto budget = cl_.GetInt("search-budget", 0);
    if (!measured.ok()) return Usage(std::string(measured.status().message()));
    if (!budget.ok()) return Usage(std::string(budget.status().message()));
    auto* search = spec.mutable_search();
    search->set_base_method(m);
    search->set_measured_configurations(static_cast<int32_t>(*measured));
    search->set_search_budget(static_cast<int32_t>(*budget));
  }
  if (auto v = cl_.Get("format")) {
    v1::OutputFormat f;
    if (!ParseEnum<v1::OutputFormat>(*v, "OUTPUT_FORMAT_", v1::OutputFormat_Parse, &f)) {
      return Usage("--format: unknown format " + *v);
    }
    spec.mutable_output()->set_format(f);
  }
  if (cl_.Has("seed")) {
    auto x = cl_.GetInt("seed", 0);
    if (!x.ok()) return Usage(std::string(x.status().message()));
    spec.set_seed(static_cast<uint64_t>(*x));
  }
  for (const auto& label : cl_.GetAll("label")) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    (*spec.mutable_labels())[kv.first] = kv.second;
  }
  request.set_request_id(cl_.GetOr("request-id", ""));

  grpc::ClientContext context;
  Prepare(context, timeout_);
  v1::Job job;
  grpc::Status status = stub_->CreateJob(&context, request, &job);
  if (!status.ok()) return RpcError(status);
  if (cl_.Has("wait")) {
    if (!json_) std::cerr << "created job " << job.id() << "\n";
    return Watch(job.id(), 0);
  }
  return Print(job, PrintJob);
}

int Client::Get(const std::string& id) {
  v1::GetJobRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  Prepare(context, timeout_);
  v1::Job job;
  grpc::Status status = stub_->GetJob(&context, request, &job);
  if (!status.ok()) return RpcError(status);
  return Print(job, PrintJob);
}

int Client::List() {
  v1::ListJobsRequest request;
  if (auto v = cl_.Get("state")) {
    v1::JobState s;
    if (!ParseEnum<v1::JobState>(*v, "JOB_STATE_", v1::JobState_Parse, &s)) return Usage("--state: unknown state " + *v);
    request.set_state(s);
  }
  auto page_size = cl_.GetInt("page-size", 0);
  if (!page_size.ok()) return Usage(std::string(page_size.status().message()));
  request.set_page_size(static_cast<int32_t>(*page_size));
  request.set_page_token(cl_.GetOr("page-token", ""));
  grpc::ClientContext context;
  Prepare(context, timeout_);
  v1::ListJobsResponse response;
  grpc::Status status = stub_->ListJobs(&context, request, &response);
  if (!status.ok()) return RpcError(status);
  if (json_) return Print(response, nullptr);
  std::cout << std::left << std::setw(18) << "JOB" << std::setw(22) << "STATE" << std::setw(26) << "METHOD"
            << std::setw(10) << "TARGET" << std::setw(20) << "PROGRESS" << "CREATED\n";
  for (const auto& job : response.jobs()) {
    std::cout << std::setw(18) << job.id() << std::setw(22) << v1::JobState_Name(job.state()) << std::setw(26)
              << v1::Method_Name(job.spec().method()) << std::setw(10) << TargetOf(job.spec())
              << std::setw(20)
              << absl::StrCat(job.progress().stage(), " ", static_cast<int>(job.progress().fraction() * 100), "%")
              << FormatTime(job.create_time()) << "\n";
  }
  if (!response.next_page_token().empty()) std::cout << "next page: --page-token " << response.next_page_token() << "\n";
  return 0;
}

int Client::Cancel(const std::string& id) {
  v1::CancelJobRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  Prepare(context, timeout_);
  v1::Job job;
  grpc::Status status = stub_->CancelJob(&context, request, &job);
  if (!status.ok()) return RpcError(status);
  return Print(job, PrintJob);
}

// "12.5 s a block, about 6m 40s left" after a block; empty for other progress.
std::string Pace(const v1::Progress& p) {
  if (p.blocks() == 0 || !p.has_seconds_left()) return "";
  const int64_t left = static_cast<int64_t>(std::llround(p.seconds_left()));
  const std::string eta = left >= 60 ? absl::StrCat(left / 60, "m ", left % 60, "s") : absl::StrCat(left, "s");
  return absl::StrCat(" (", absl::StrFormat("%.1f", p.seconds_per_block()), " s a block, about ", eta, " left)");
}

// A progress bar redrawn in place on a terminal; plain lines anywhere else.
class ProgressView {
 public:
  explicit ProgressView(bool json) : json_(json), tty_(!json && isatty(STDOUT_FILENO)) {}

  void Show(const v1::JobEvent& event) {
    if (json_) {
      std::cout << shears::ToJson(event, /*multiline=*/false) << std::endl;
      return;
    }
    if (event.has_progress()) {
      const auto& p = event.progress();
      const std::string message = p.message() + Pace(p);
      if (tty_) {
        constexpr int kWidth = 30;
        const int filled = static_cast<int>(p.fraction() * kWidth);
        std::cout << "\r\033[K[" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] "
                  << std::setw(3) << static_cast<int>(p.fraction() * 100) << "% " << p.stage() << ": "
                  << message << std::flush;
        bar_drawn_ = true;
      } else {
        std::cout << "progress " << static_cast<int>(p.fraction() * 100) << "% " << p.stage() << ": "
                  << message << std::endl;
      }
    } else if (event.has_state_change()) {
      // The bar keeps its last state on its own line.
      if (bar_drawn_) std::cout << "\n";
      bar_drawn_ = false;
      std::cout << "state " << v1::JobState_Name(event.state_change().state()) << ": "
                << event.state_change().message() << std::endl;
    } else if (event.has_evaluation()) {
      if (bar_drawn_) std::cout << "\n";
      bar_drawn_ = false;
      std::cout << "perplexity dense " << event.evaluation().dense_perplexity() << ", pruned "
                << event.evaluation().pruned_perplexity() << std::endl;
    } else if (event.has_redundancy()) {
      if (bar_drawn_) std::cout << "\n";
      bar_drawn_ = false;
      std::cout << "block influence (" << event.redundancy().model() << ")";
      for (const auto& block : event.redundancy().blocks()) std::cout << " " << block.block_influence();
      std::cout << std::endl;
    } else if (event.has_layer() && !tty_) {
      const auto& layer = event.layer();
      std::cout << "layer " << layer.name() << " sparsity " << layer.achieved_sparsity();
      if (layer.has_reconstruction_error()) std::cout << " reconstruction error " << layer.reconstruction_error();
      std::cout << std::endl;
    }
  }

 private:
  bool json_;
  bool tty_;
  bool bar_drawn_ = false;
};

int Client::Watch(const std::string& id, int64_t after) {
  const absl::Time deadline = absl::Now() + (cl_.Has("timeout") ? timeout_ : absl::Hours(24));
  ProgressView view(json_);
  // A stream the server ends UNAVAILABLE or CANCELLED (a replica draining or dying, a lost connection) goes on
  // from the last event shown, through whichever replica answers next; the tries start over with
  // each event that arrives.
  constexpr int kMaxTries = 30;
  for (int tries = 1;; ++tries) {
    v1::WatchJobRequest request;
    request.set_job_id(id);
    request.set_after_sequence(after);
    grpc::ClientContext context;
    Prepare(context, deadline - absl::Now());
    auto reader = stub_->WatchJob(&context, request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      view.Show(event);
      after = event.sequence();
      tries = 1;
    }
    const grpc::Status status = reader->Finish();
    if (status.ok()) break;
    const absl::Duration backoff = std::min(absl::Milliseconds(100) * (1 << std::min(tries, 6)), absl::Seconds(5));
    // CANCELLED too: shearsctl cancels nothing, so it is a server that stopped mid-call.
    const bool interrupted = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::CANCELLED;
    if (!interrupted || tries >= kMaxTries || absl::Now() + backoff >= deadline) {
      return RpcError(status);
    }
    std::cerr << "shearsctl: the watch was interrupted (" << status.error_message() << "); resuming after event "
              << after << "\n";
    absl::SleepFor(backoff);
  }

  grpc::ClientContext get_context;
  Prepare(get_context, timeout_);
  v1::GetJobRequest get;
  get.set_job_id(id);
  v1::Job job;
  const grpc::Status status = stub_->GetJob(&get_context, get, &job);
  if (!status.ok()) return RpcError(status);
  if (!json_) PrintJob(job);
  return job.state() == v1::JOB_STATE_SUCCEEDED ? 0 : kExitJobFailed;
}

}  // namespace

int main(int argc, char** argv) {
  auto cl = CommandLine::Parse(argc, argv, {"json", "wait", "help", "distill"});
  if (!cl.ok()) return Usage(std::string(cl.status().message()));
  if (cl->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (auto st = cl->CheckKnown({"server", "timeout", "json", "help", "spec", "model", "method", "structure", "sparsity",
                                "output", "seed", "label", "request-id", "wait", "state", "page-size", "page-token",
                                "after", "nm", "calibration", "samples", "seq-len", "format", "allocation",
                                "fine-tune", "steps", "distill", "low-rank", "search-base", "search-configurations",
                                "search-budget", "width-multiple", "sublayers", "token", "token-file", "tls-ca", "tls-cert",
                                "tls-key"});
      !st.ok()) {
    return Usage(std::string(st.message()));
  }
  const auto& words = cl->words();
  if (words.empty()) return Usage("a command is required");
  const char* env_server = std::getenv("SHEARS_SERVER");
  const std::string server = cl->GetOr("server", env_server ? env_server : "localhost:50051");
  auto timeout = cl->GetDuration("timeout", absl::Seconds(30));
  if (!timeout.ok()) return Usage(std::string(timeout.status().message()));
  auto connection = shears::ChannelFlags(*cl, server, shears::kDefaultMaxMessageBytes);
  if (!connection.ok()) return Usage(std::string(connection.status().message()));
  auto channel = shears::OpenChannel(*connection);
  if (!channel.ok()) return Usage(std::string(channel.status().message()));
  // Whatever the server or a worker put in a job reaches this terminal without escape sequences.
  shears::PrintableOutput printable_out(std::cout), printable_err(std::cerr);
  Client client(*cl, *channel, connection->token.Get(), *timeout, cl->Has("json"));

  const std::string& command = words[0];
  auto job_id = [&]() -> std::string { return words.size() > 1 ? words[1] : ""; };
  if (command == "create") return client.Create();
  if (command == "list") return client.List();
  if (command == "get" || command == "cancel" || command == "watch") {
    if (job_id().empty()) return Usage(command + " needs a JOB_ID");
    if (command == "get") return client.Get(job_id());
    if (command == "cancel") return client.Cancel(job_id());
    auto after = cl->GetInt("after", 0);
    if (!after.ok()) return Usage(std::string(after.status().message()));
    return client.Watch(job_id(), *after);
  }
  return Usage("unknown command '" + command + "'");
}
