// The attacks of issue 18 tried against a running shears-server as an outsider would try them, each
// refused with the code a client relies on; and each role still doing its job, over TLS with tokens.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <set>
#include <thread>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/channel.h"
#include "common/files.h"
#include "common/sha256.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "shears/v1/workers.grpc.pb.h"
#include "tests/support/health_check.h"
#include "tests/support/process.h"
#include "tests/support/test_certificates.h"
#include "tests/support/test_identities.h"
#include "tests/support/test_jwt.h"
#include "tests/support/test_util.h"

namespace shears {
namespace {

using testing::Binary;
using testing::DataDir;
using testing::Process;
using testing::RunCommand;
using testing::TempDir;

using testing::kAliceToken;
using testing::kBobToken;
using testing::kCarolToken;
using testing::kRootToken;
using testing::kWorkerToken;
constexpr const char* kAlice = kAliceToken;
constexpr const char* kBob = kBobToken;
constexpr const char* kCarol = kCarolToken;
constexpr const char* kRoot = kRootToken;
constexpr const char* kWorker = kWorkerToken;

class SecurityTest : public ::testing::Test {
 protected:
  // A TLS server with the test identities and an audit log, plus `flags`.
  void Start(std::vector<std::string> flags = {}) {
    secure_ = testing::StartSecureServer(dir_.path(), flags);
    ASSERT_TRUE(secure_.error.empty()) << secure_.error;
    certs_ = secure_.certs;
    server_ = std::move(secure_.server);
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& cert = "", const std::string& key = "") {
    ChannelOptions options;
    options.target = server_.address;
    options.tls_ca_file = certs_.ca;
    options.tls_cert_file = cert;
    options.tls_key_file = key;
    return OpenChannel(options).value();
  }
  std::unique_ptr<v1::Pruning::Stub> Pruning() { return v1::Pruning::NewStub(Channel()); }
  std::unique_ptr<v1::Workers::Stub> Workers() { return v1::Workers::NewStub(Channel()); }

  static std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    AddToken(*context, token);
    return context;
  }

  static v1::JobSpec Spec() {
    v1::JobSpec spec;
    spec.set_model_uri("file:///models/m");
    spec.set_method(v1::METHOD_MAGNITUDE);
    spec.set_target_sparsity(0.5);
    static int outputs = 0;  // each job its own: two that have not ended may not share one
    spec.mutable_output()->set_uri(absl::StrCat("file:///tmp/shears-security-test-out/", ++outputs));
    return spec;
  }

  grpc::Status Create(const std::string& token, v1::Job* job, const std::string& request_id = "") {
    v1::CreateJobRequest request;
    *request.mutable_spec() = Spec();
    // A repeated request sends the same spec, so its output is named by the caller and the request.
    if (!request_id.empty()) {
      request.mutable_spec()->mutable_output()->set_uri(
          absl::StrCat("file:///tmp/shears-security-test-out/", token, "-", request_id));
    }
    request.set_request_id(request_id);
    return Pruning()->CreateJob(As(token).get(), request, job);
  }
  grpc::Status Get(const std::string& token, const std::string& id, v1::Job* job) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    return Pruning()->GetJob(As(token).get(), request, job);
  }
  std::vector<std::string> List(const std::string& token) {
    v1::ListJobsResponse response;
    EXPECT_TRUE(Pruning()->ListJobs(As(token).get(), v1::ListJobsRequest(), &response).ok());
    std::vector<std::string> ids;
    for (const auto& job : response.jobs()) ids.push_back(job.id());
    return ids;
  }
  grpc::Status Lease(const std::string& token, v1::LeaseJobResponse* response) {
    v1::LeaseJobRequest request;
    request.set_worker_id("w");
    return Workers()->LeaseJob(As(token).get(), request, response);
  }

  // A worker of this server, with its token, working in `work`.
  std::unique_ptr<Process> StartWorker(const std::string& work, const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {Binary("worker/shears-worker"), "--server", server_.address, "--work-dir", work,
                                     "--poll-wait", "1s", "--tls-ca", certs_.ca, "--token-file", secure_.worker_token};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return std::make_unique<Process>(argv, dir_ / "worker.log");
  }
  // The job as `token` sees it once it has ended, or after 30 s.
  v1::Job WaitUntilEnded(const std::string& token, const std::string& id) {
    v1::Job job;
    for (int i = 0; i < 300 && Get(token, id, &job).ok(); ++i) {
      if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED ||
          job.state() == v1::JOB_STATE_CANCELLED) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return job;
  }

  std::vector<nlohmann::json> AuditLines() {
    std::vector<nlohmann::json> lines;
    for (absl::string_view line : absl::StrSplit(ReadFile(secure_.audit_log).value_or(""), '\n', absl::SkipEmpty())) {
      lines.push_back(nlohmann::json::parse(line));
    }
    return lines;
  }

  TempDir dir_;
  testing::SecureServer secure_;
  testing::TestCertificates certs_;
  testing::ServerProcess server_;
};

TEST_F(SecurityTest, CallsWithoutAKnownIdentityAreUnauthenticated) {
  Start();
  v1::Job job;
  for (const std::string token : {"", "not-a-token"}) {
    EXPECT_EQ(Create(token, &job).error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
    v1::ListJobsResponse list;
    EXPECT_EQ(Pruning()->ListJobs(As(token).get(), v1::ListJobsRequest(), &list).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::LeaseJobResponse lease;
    EXPECT_EQ(Lease(token, &lease).error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
  }
  auto context = As("");
  context->AddMetadata("authorization", std::string("Basic ") + kAlice);
  const grpc::Status basic = Pruning()->CreateJob(context.get(), v1::CreateJobRequest(), &job);
  EXPECT_EQ(basic.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(basic.error_message().find("Bearer"), std::string::npos) << basic.error_message();
}

// The first attack: a client leased a job, injected events and completed it with an
// artifact of its choosing. Now every Workers call from a non-worker is PERMISSION_DENIED, and the
// job stays queued for a real worker.
TEST_F(SecurityTest, OnlyWorkersCallTheWorkersApiAndOnlyClientsThePruningApi) {
  Start();
  v1::Job job;
  ASSERT_TRUE(Create(kAlice, &job).ok());
  for (const char* token : {kAlice, kRoot}) {
    v1::LeaseJobResponse lease;
    EXPECT_EQ(Lease(token, &lease).error_code(), grpc::StatusCode::PERMISSION_DENIED) << token;
    v1::CompleteJobRequest complete;
    complete.set_job_id(job.id());
    complete.set_lease_id("guessed");
    complete.mutable_result()->add_artifacts()->set_uri("s3://attacker/model");
    v1::CompleteJobResponse ignored;
    EXPECT_EQ(Workers()->CompleteJob(As(token).get(), complete, &ignored).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    v1::ReportEventsRequest events;
    events.set_job_id(job.id());
    events.set_lease_id("guessed");
    v1::ReportEventsResponse reported;
    EXPECT_EQ(Workers()->ReportEvents(As(token).get(), events, &reported).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  v1::Job still;
  ASSERT_TRUE(Get(kAlice, job.id(), &still).ok());
  EXPECT_EQ(still.state(), v1::JOB_STATE_QUEUED);

  // A worker cannot use the Pruning API (to list or cancel jobs of every team).
  EXPECT_EQ(Create(kWorker, &job).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::ListJobsResponse list;
  const grpc::Status listed = Pruning()->ListJobs(As(kWorker).get(), v1::ListJobsRequest(), &list);
  EXPECT_EQ(listed.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(listed.error_message().find("role worker"), std::string::npos) << listed.error_message();

  // The worker role leases it.
  v1::LeaseJobResponse lease;
  ASSERT_TRUE(Lease(kWorker, &lease).ok());
  EXPECT_EQ(lease.job().id(), still.id());
}

TEST_F(SecurityTest, TenantsSeeOnlyTheirOwnJobsAndRequestIdsAreTheirs) {
  Start();
  v1::Job alices, bobs, missing;
  ASSERT_TRUE(Create(kAlice, &alices, "nightly").ok());
  EXPECT_EQ(alices.tenant(), "team-a");
  EXPECT_EQ(alices.creator(), "alice");
  // The same request id in another tenant is another job, not alice's.
  ASSERT_TRUE(Create(kBob, &bobs, "nightly").ok());
  EXPECT_NE(bobs.id(), alices.id());
  EXPECT_EQ(bobs.tenant(), "team-b");

  // Another tenant's job is exactly as absent as one that never existed.
  const grpc::Status foreign = Get(kBob, alices.id(), &missing);
  const grpc::Status absent = Get(kBob, "0123456789abcdef0123456789abcdef", &missing);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(absent.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(foreign.error_message(), absl::StrCat("job ", alices.id(), " not found"));
  v1::CancelJobRequest cancel;
  cancel.set_job_id(alices.id());
  EXPECT_EQ(Pruning()->CancelJob(As(kBob).get(), cancel, &missing).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::WatchJobRequest watch;
  watch.set_job_id(alices.id());
  auto context = As(kBob);
  auto reader = Pruning()->WatchJob(context.get(), watch);
  v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(List(kAlice), std::vector<std::string>{alices.id()});
  EXPECT_EQ(List(kBob), std::vector<std::string>{bobs.id()});
  EXPECT_EQ(List(kRoot), (std::vector<std::string>{alices.id(), bobs.id()}));
  v1::Job seen;
  EXPECT_TRUE(Get(kRoot, alices.id(), &seen).ok());
  // Bob's cancel did nothing; alice's own works.
  ASSERT_TRUE(Get(kAlice, alices.id(), &seen).ok());
  EXPECT_EQ(seen.state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(Pruning()->CancelJob(As(kAlice).get(), cancel, &seen).ok());
  EXPECT_EQ(seen.state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SecurityTest, ATenantsQueuedAndRunningJobsAreBoundedByItsQuota) {
  Start({"--tenant-quota", "2"});
  v1::Job first, second, third;
  ASSERT_TRUE(Create(kAlice, &first).ok());
  ASSERT_TRUE(Create(kAlice, &second).ok());
  const grpc::Status over = Create(kAlice, &third);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.error_message().find("quota: tenant team-a has 2 queued or running jobs"), std::string::npos)
      << over.error_message();
  EXPECT_TRUE(Create(kBob, &third).ok()) << "another tenant's quota is its own";
  // A job that ends frees its place; a repeated request id is no new job and passes the quota.
  v1::CancelJobRequest cancel;
  cancel.set_job_id(first.id());
  ASSERT_TRUE(Pruning()->CancelJob(As(kAlice).get(), cancel, &first).ok());
  ASSERT_TRUE(Create(kAlice, &third, "again").ok());
  v1::Job repeated;
  EXPECT_TRUE(Create(kAlice, &repeated, "again").ok());
  EXPECT_EQ(repeated.id(), third.id());
}

TEST_F(SecurityTest, SighupReloadsIdentitiesAndKeepsThemWhenTheFileIsBroken) {
  Start();
  v1::Job job;
  EXPECT_EQ(Create(kCarol, &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Carol joins, bob leaves.
  nlohmann::json identities = testing::TestIdentities(/*with_carol=*/true);
  identities["tokens"].erase(1);
  ASSERT_TRUE(WriteFileAtomically(dir_ / "identities.json", identities.dump()).ok());
  server_.process->Signal(SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Create(kCarol, &job).ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Create(kCarol, &job).ok());
  EXPECT_EQ(job.tenant(), "team-a");
  EXPECT_EQ(Create(kBob, &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // A broken file on the next reload: what was in force stays, and the log says why.
  ASSERT_TRUE(WriteFileAtomically(dir_ / "identities.json", "{\"tokens\": [{\"sha256\": \"abc\"}]}").ok());
  server_.process->Signal(SIGHUP);
  const std::string said = "kept what was in force: --auth-token-file " + (dir_ / "identities.json") +
                           ": tokens[0].principal: is required";
  const auto logged = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_.process->Log().find(said) == std::string::npos && std::chrono::steady_clock::now() < logged) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(server_.process->Log().find(said), std::string::npos) << server_.process->Log();
  EXPECT_TRUE(Create(kCarol, &job).ok());
}

TEST_F(SecurityTest, CreateCancelAndCompleteAreAuditedWithWhoAndOutcome) {
  Start();
  v1::Job job;
  ASSERT_TRUE(Create(kAlice, &job).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  ASSERT_TRUE(Pruning()->CancelJob(As(kAlice).get(), cancel, &job).ok());
  EXPECT_EQ(Pruning()->CancelJob(As(kBob).get(), cancel, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CompleteJobRequest complete;
  complete.set_job_id(job.id());
  complete.set_lease_id("guessed");
  complete.set_error("made up");
  v1::CompleteJobResponse ignored;
  EXPECT_FALSE(Workers()->CompleteJob(As(kAlice).get(), complete, &ignored).ok());
  EXPECT_FALSE(Workers()->CompleteJob(As("").get(), complete, &ignored).ok());

  const auto lines = AuditLines();
  ASSERT_EQ(lines.size(), 5u) << ReadFile(secure_.audit_log).value_or("");
  const auto expect = [&](size_t i, const std::string& action, const std::string& principal, const std::string& outcome) {
    EXPECT_EQ(lines[i]["audit"], action) << lines[i];
    EXPECT_EQ(lines[i].value("principal", ""), principal) << lines[i];
    EXPECT_EQ(lines[i]["job_id"], job.id()) << lines[i];
    EXPECT_EQ(lines[i]["outcome"], outcome) << lines[i];
    EXPECT_TRUE(lines[i].contains("time")) << lines[i];
  };
  expect(0, "CreateJob", "alice", "OK");
  EXPECT_EQ(lines[0]["tenant"], "team-a");
  expect(1, "CancelJob", "alice", "OK");
  expect(2, "CancelJob", "bob", "NOT_FOUND");
  expect(3, "CompleteJob", "alice", "PERMISSION_DENIED");
  expect(4, "CompleteJob", "", "UNAUTHENTICATED");
}

TEST_F(SecurityTest, IdsAre128RandomBits) {
  Start();
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    v1::Job job;
    ASSERT_TRUE(Create(kAlice, &job).ok());
    EXPECT_TRUE(std::regex_match(job.id(), std::regex("[0-9a-f]{32}"))) << job.id();
    ids.insert(job.id());
  }
  EXPECT_EQ(ids.size(), 20u);
  v1::LeaseJobResponse lease;
  ASSERT_TRUE(Lease(kWorker, &lease).ok());
  EXPECT_TRUE(std::regex_match(lease.lease_id(), std::regex("[0-9a-f]{32}"))) << lease.lease_id();
}

TEST_F(SecurityTest, PlaintextToATlsServerFails) {
  Start();
  auto plain = v1::Pruning::NewStub(grpc::CreateChannel(server_.address, grpc::InsecureChannelCredentials()));
  v1::Job job;
  v1::CreateJobRequest request;
  *request.mutable_spec() = Spec();
  EXPECT_EQ(plain->CreateJob(As(kAlice).get(), request, &job).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(List(kRoot).empty());
}

// Under mutual TLS a worker may name itself by its certificate alone; a certificate the CA signed
// but the identity file does not list is no identity, and no certificate is no connection.
TEST_F(SecurityTest, MutualTlsIdentifiesByTheCertificateSubject) {
  Start({"--client-ca", dir_ / "ca.pem"});  // the CA MakeTestCertificates writes there
  v1::LeaseJobRequest request;
  request.set_worker_id("w");
  v1::LeaseJobResponse lease;
  auto as_worker = v1::Workers::NewStub(Channel(certs_.client_cert, certs_.client_key));
  EXPECT_TRUE(as_worker->LeaseJob(As("").get(), request, &lease).ok());
  auto stranger = v1::Workers::NewStub(Channel(certs_.stranger_cert, certs_.stranger_key));
  const grpc::Status unknown = stranger->LeaseJob(As("").get(), request, &lease);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(unknown.error_message().find("CN=stranger"), std::string::npos) << unknown.error_message();
  auto anonymous = v1::Workers::NewStub(Channel());
  EXPECT_EQ(anonymous->LeaseJob(As(kWorker).get(), request, &lease).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A token still names its caller over a client certificate's connection.
  v1::Job job;
  v1::CreateJobRequest create;
  *create.mutable_spec() = Spec();
  auto alice = v1::Pruning::NewStub(Channel(certs_.client_cert, certs_.client_key));
  ASSERT_TRUE(alice->CreateJob(As(kAlice).get(), create, &job).ok());
  EXPECT_EQ(job.creator(), "alice");
}

TEST_F(SecurityTest, WithoutIdentitiesTheServerServesLoopbackOnly) {
  auto run = RunCommand({Binary("server/shears-server"), "--listen", "0.0.0.0:0", "--db", dir_ / "open.db"},
                        dir_ / "open.log");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.out.find("without --auth-token-file the server serves loopback only"), std::string::npos) << run.out;
  auto open = testing::StartServer(dir_.path());
  ASSERT_FALSE(open.address.empty());
  EXPECT_NE(open.process->Log().find("warning: no --auth-token-file: serving loopback only"), std::string::npos)
      << open.process->Log();
  auto broken = RunCommand({Binary("server/shears-server"), "--listen", "127.0.0.1:0", "--db", dir_ / "b.db",
                            "--auth-token-file", dir_ / "missing.json"},
                           dir_ / "broken.log");
  EXPECT_EQ(broken.status, 2);
  EXPECT_NE(broken.out.find("--auth-token-file " + (dir_ / "missing.json")), std::string::npos) << broken.out;
}

// Every role doing its job at once: a worker over TLS with its token file, a client through
// shearsctl over TLS with its token; the job runs and its owner reads it.
TEST_F(SecurityTest, WorkerAndShearsctlDoTheirJobsOverTlsWithTokens) {
  Start();
  auto worker = StartWorker(dir_ / "work", {"--threads", "2"});
  const auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {Binary("client/shearsctl"), "--server", server_.address, "--tls-ca", certs_.ca});
    return RunCommand(args, dir_ / "ctl.log");
  };
  auto created = ctl({"create", "--model", "file://" + DataDir("tiny-llama"), "--method", "magnitude", "--sparsity",
                      "0.5", "--output", "file://" + (dir_ / "out"), "--token", kAlice, "--json"});
  ASSERT_EQ(created.status, 0) << created.out;
  const std::string id = nlohmann::json::parse(created.out)["id"];
  auto watched = ctl({"watch", id, "--token", kAlice});
  EXPECT_EQ(watched.status, 0) << watched.out << worker->Log();
  auto got = ctl({"get", "--json", "--token", kAlice, id});
  ASSERT_EQ(got.status, 0) << got.out;
  auto job = nlohmann::json::parse(got.out);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED") << got.out;
  EXPECT_EQ(job["tenant"], "team-a");
  EXPECT_EQ(job["creator"], "alice");
  EXPECT_TRUE(ReadFile(dir_ / "out/manifest.json").ok());
  // Without a token, or with another team's, shearsctl is refused (exit 3) and says why.
  auto anonymous = ctl({"get", id});
  EXPECT_EQ(anonymous.status, 3);
  EXPECT_NE(anonymous.out.find("UNAUTHENTICATED"), std::string::npos) << anonymous.out;
  setenv("SHEARS_TOKEN", kBob, 1);
  auto foreign = ctl({"get", id});
  unsetenv("SHEARS_TOKEN");
  EXPECT_EQ(foreign.status, 3);
  EXPECT_NE(foreign.out.find("not found"), std::string::npos) << foreign.out;
}

// A worker (or anyone who once held its token) writes an error full of terminal escapes; the
// operator's shearsctl shows the words without them.
TEST_F(SecurityTest, ShearsctlStripsControlCharactersFromWhatItPrints) {
  Start();
  v1::Job job;
  ASSERT_TRUE(Create(kAlice, &job).ok());
  v1::LeaseJobResponse lease;
  ASSERT_TRUE(Lease(kWorker, &lease).ok());
  v1::CompleteJobRequest complete;
  complete.set_job_id(job.id());
  complete.set_lease_id(lease.lease_id());
  complete.set_error("out of \x1b]0;owned\x07memory\x1b[2J\r\xc2\x9b" "31m on block 3");
  v1::CompleteJobResponse ignored;
  ASSERT_TRUE(Workers()->CompleteJob(As(kWorker).get(), complete, &ignored).ok());
  auto got = RunCommand({Binary("client/shearsctl"), "--server", server_.address, "--tls-ca", certs_.ca, "--token",
                         kAlice, "get", job.id()},
                        dir_ / "ctl.log");
  EXPECT_EQ(got.status, 0) << got.out;
  EXPECT_NE(got.out.find("out of ]0;ownedmemory[2J31m on block 3"), std::string::npos) << got.out;
  for (char c : got.out) {
    const auto byte = static_cast<unsigned char>(c);
    EXPECT_FALSE((byte < 0x20 && c != '\n' && c != '\t') || byte == 0x7f) << "control byte " << int(byte);
  }
  EXPECT_EQ(got.out.find("\xc2\x9b"), std::string::npos);
}


// Kubernetes' gRPC probes speak no TLS: --health-listen answers them in plaintext, and serves
// nothing but health there.
TEST_F(SecurityTest, TheHealthPortAnswersPlaintextProbesAndNothingElse) {
  Start({"--health-listen", "127.0.0.1:0", "--health-port-file", dir_ / "health.port"});
  const std::string port = testing::WaitForFile(dir_ / "health.port", std::chrono::seconds(10));
  ASSERT_FALSE(port.empty());
  const std::string health = "127.0.0.1:" + port.substr(0, port.find('\n'));
  EXPECT_EQ(testing::HealthCheck(health), testing::kServing);
  EXPECT_NE(testing::HealthCheck(server_.address), testing::kServing) << "the main port is TLS only";
  auto plain = v1::Pruning::NewStub(grpc::CreateChannel(health, grpc::InsecureChannelCredentials()));
  v1::Job job;
  v1::CreateJobRequest request;
  *request.mutable_spec() = Spec();
  EXPECT_EQ(plain->CreateJob(As(kAlice).get(), request, &job).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}


// Outputs that would clobber: the input spelled `<model>/.`, another running job's output, and the
// worker's own download cache (the attacks), each refused before a byte is written.
TEST_F(SecurityTest, OutputsCannotClobberInputsOtherJobsOrTheWorkersCache) {
  Start();
  const auto create = [&](const std::string& token, const std::string& model, const std::string& output, v1::Job* job) {
    v1::CreateJobRequest request;
    *request.mutable_spec() = Spec();
    request.mutable_spec()->set_model_uri(model);
    request.mutable_spec()->mutable_output()->set_uri(output);
    return Pruning()->CreateJob(As(token).get(), request, job);
  };
  v1::Job job;
  const std::string model = "file://" + DataDir("tiny-llama");
  const grpc::Status dot = create(kAlice, model, model + "/.", &job);
  EXPECT_EQ(dot.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(dot.error_message().find("spec.output.uri: overlaps model_uri"), std::string::npos) << dot.error_message();

  ASSERT_TRUE(create(kAlice, model, "file://" + (dir_ / "shared-out"), &job).ok());
  const grpc::Status taken = create(kBob, model, "file://" + (dir_ / "shared-out/inner"), &job);
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(taken.error_message().find("overlaps the output of another tenant's job, which has not ended"),
            std::string::npos)
      << taken.error_message();

  // The worker refuses an output in its work directory, where its download cache lies.
  const std::string work = dir_ / "work";
  v1::Job poisoned;
  ASSERT_TRUE(create(kBob, model, "file://" + work + "/cache/0123456789abcdef01234567", &poisoned).ok());
  v1::CancelJobRequest cancel;  // alice's job out of the worker's way
  cancel.set_job_id(job.id());
  ASSERT_TRUE(Pruning()->CancelJob(As(kAlice).get(), cancel, &job).ok());
  auto worker = StartWorker(work);
  const v1::Job seen = WaitUntilEnded(kBob, poisoned.id());
  EXPECT_EQ(seen.state(), v1::JOB_STATE_FAILED) << worker->Log();
  EXPECT_NE(seen.error().find("spec.output.uri: file://" + work + "/cache/0123456789abcdef01234567 lies in the "
                              "worker's work directory"),
            std::string::npos)
      << seen.error();
}


// Workers read whatever URI a client named, with the workers' credentials. Under --uri-policy the
// server refuses a URI outside the caller's tenant's prefixes, a tenant without a policy names
// nothing, and a worker with the policy refuses such a job itself (a server without the file).
TEST_F(SecurityTest, EachTenantNamesOnlyTheUrisItsPolicyAllows) {
  const std::string model = DataDir("tiny-llama");
  ASSERT_TRUE(WriteFileAtomically(dir_ / "policy.json",
                                  nlohmann::json{{"tenants",
                                                  {{"team-a", {{"allow", {"file://" + model, "file://" + (dir_ / "team-a")}}}}}}}
                                      .dump())
                  .ok());
  Start({"--uri-policy", dir_ / "policy.json"});
  const auto create = [&](const std::string& token, const std::string& model_uri, const std::string& output) {
    v1::CreateJobRequest request;
    *request.mutable_spec() = Spec();
    request.mutable_spec()->set_model_uri(model_uri);
    request.mutable_spec()->mutable_output()->set_uri(output);
    v1::Job job;
    return Pruning()->CreateJob(As(token).get(), request, &job);
  };
  EXPECT_TRUE(create(kAlice, "file://" + model, "file://" + (dir_ / "team-a/out")).ok());
  const grpc::Status outside = create(kAlice, "file:///etc", "file://" + (dir_ / "team-a/out2"));
  EXPECT_EQ(outside.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(outside.error_message().find("spec.model_uri: 'file:///etc' is outside tenant team-a's URI policy"),
            std::string::npos)
      << outside.error_message();
  EXPECT_EQ(create(kAlice, "file://" + model, "s3://anything/out").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status unlisted = create(kBob, "file://" + model, "file://" + (dir_ / "team-b/out"));
  EXPECT_EQ(unlisted.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(unlisted.error_message().find("tenant team-b has no URI policy"), std::string::npos)
      << unlisted.error_message();
}

TEST_F(SecurityTest, AWorkerWithThePolicyRefusesAJobOutsideItBeforeAByteMoves) {
  const std::string model = DataDir("tiny-llama");
  ASSERT_TRUE(WriteFileAtomically(dir_ / "policy.json",
                                  nlohmann::json{{"tenants", {{"team-a", {{"allow", {"file://" + (dir_ / "team-a")}}}}}}}
                                      .dump())
                  .ok());
  Start();  // a server without the policy
  v1::Job job;
  v1::CreateJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_model_uri("file://" + model);
  request.mutable_spec()->mutable_output()->set_uri("file://" + (dir_ / "team-a/out"));
  ASSERT_TRUE(Pruning()->CreateJob(As(kAlice).get(), request, &job).ok());
  auto worker = StartWorker(dir_ / "work", {"--uri-policy", dir_ / "policy.json"});
  const v1::Job seen = WaitUntilEnded(kAlice, job.id());
  EXPECT_EQ(seen.state(), v1::JOB_STATE_FAILED) << worker->Log();
  EXPECT_NE(seen.error().find("spec.model_uri: 'file://" + model + "' is outside tenant team-a's URI policy"),
            std::string::npos)
      << seen.error();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "team-a/out"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "work/jobs/" + job.id())) << "no download, no scratch";
}


// Kubernetes projected service-account tokens: JWTs of the cluster's issuer for the audience
// "shears", their subject mapped by the identity file.
TEST_F(SecurityTest, JwtsOfTheConfiguredIssuerNameTheirSubjectsIdentity) {
  testing::TestSigningKey cluster("RS256", "cluster-key");
  ASSERT_TRUE(WriteFileAtomically(dir_ / "jwks.json", nlohmann::json{{"keys", nlohmann::json::array({cluster.Jwk()})}}.dump()).ok());
  Start({"--jwt-jwks", dir_ / "jwks.json", "--jwt-issuer", "https://kubernetes.default.svc", "--jwt-audience", "shears"});
  const auto token = [&](const std::string& subject, const std::string& audience = "shears") {
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    return cluster.Sign({{"iss", "https://kubernetes.default.svc"}, {"aud", {audience}}, {"sub", subject},
                         {"exp", now + 600}, {"iat", now}});
  };
  v1::LeaseJobResponse lease;
  EXPECT_TRUE(Lease(token("system:serviceaccount:shears:shears-worker"), &lease).ok());
  v1::Job job;
  ASSERT_TRUE(Create(token("system:serviceaccount:team-a:pipeline"), &job).ok());
  EXPECT_EQ(job.tenant(), "team-a");
  EXPECT_EQ(job.creator(), "team-a-pipeline");
  const grpc::Status stranger = Lease(token("system:serviceaccount:default:default"), &lease);
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(stranger.error_message().find("JWT subject \"system:serviceaccount:default:default\" is not in the "
                                          "identity file"),
            std::string::npos)
      << stranger.error_message();
  const grpc::Status vault = Lease(token("system:serviceaccount:shears:shears-worker", "vault"), &lease);
  EXPECT_EQ(vault.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(vault.error_message().find("JWT: audience is not shears"), std::string::npos) << vault.error_message();
}

}  // namespace
}  // namespace shears
