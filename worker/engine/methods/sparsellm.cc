#include "worker/engine/methods/sparsellm.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <optional>

#include "common/status_macros.h"
#include "worker/engine/methods/sparsegpt.h"
#include "worker/engine/model/layers.h"

namespace shears::engine {
namespace {

// The reference code's step size and count for the variables without a closed form.
constexpr int kGradientSteps = 2;
constexpr double kLearningRate = 0.01;

struct Penalties {
  int iterations;
  double alpha, beta, gamma;
};

Penalties Resolve(const SparseLlmOptions& options, bool gated) {
  Penalties p = gated ? Penalties{8, 5.0, 5.0, 5.0} : Penalties{10, 0.1, 0.1, 0.1};
  if (options.iterations > 0) p.iterations = options.iterations;
  if (options.alpha > 0) p.alpha = options.alpha;
  if (options.beta > 0) p.beta = options.beta;
  if (options.gamma > 0) p.gamma = options.gamma;
  return p;
}

// Tokens at a time in the passes over the auxiliary variables [tokens, ffn], so that their
// intermediates (autograd's above all) take a chunk's memory, not the calibration set's: at 16k
// tokens and Llama-2-7B's width each whole F32 intermediate is 721 MB.
constexpr int64_t kTokenChunk = 2048;

// f(begin, end) for every chunk of `tokens` rows.
void ForEachChunk(int64_t tokens, const std::function<void(int64_t, int64_t)>& f) {
  for (int64_t i = 0; i < tokens; i += kTokenChunk) f(i, std::min(i + kTokenChunk, tokens));
}

// Gradient steps on a loss that is a sum of independent per-element terms, so that a step means
// the same whatever the number of calibration tokens; `loss(v, anchor, begin, end)` is the loss of
// the rows begin..end, whose current values are v, and `anchor(begin, end)` what those rows are
// drawn towards, made once for the rows' steps (a whole one is [tokens, ffn], 721 MB at 16k
// tokens and Llama-2-7B's width). Steps `x` in place: the rows' terms are independent, so each
// chunk takes all its steps before the next one.
void Descend(torch::Tensor& x, const std::function<torch::Tensor(int64_t, int64_t)>& anchor,
             const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, int64_t, int64_t)>& loss) {
  ForEachChunk(x.size(0), [&](int64_t begin, int64_t end) {
    auto rows = x.slice(0, begin, end);
    const torch::Tensor drawn_to = anchor(begin, end);
    for (int step = 0; step < kGradientSteps; ++step) {
      torch::Tensor v;
      {
        torch::AutoGradMode enable(true);
        v = rows.detach().clone().requires_grad_(true);
        loss(v, drawn_to, begin, end).backward();
      }
      rows.sub_(kLearningRate * v.grad());
    }
  });
}

// argmin_z γ(p − relu(z))² + α(z − m)² elementwise: the better of the minimizers on z ≥ 0 and
// on z ≤ 0.
torch::Tensor ReluPreactivation(const torch::Tensor& p, const torch::Tensor& m, double alpha, double gamma) {
  auto positive = ((gamma * p + alpha * m) / (gamma + alpha)).clamp_min(0);
  auto negative = m.clamp_max(0);
  auto cost = [&](const torch::Tensor& z) { return gamma * (p - z.relu()).square() + alpha * (z - m).square(); };
  return torch::where(cost(positive) <= cost(negative), positive, negative);
}

torch::Tensor BiasOf(const BlockToPrune& block, const std::string& name) {
  if (name.empty()) return {};
  auto it = block.tensors->find(name);
  return it == block.tensors->end() ? torch::Tensor() : it->second;
}

torch::Tensor Apply(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  auto y = x.matmul(weight.t());
  return bias.defined() ? y + bias : y;
}

torch::Tensor LessBias(const torch::Tensor& y, const torch::Tensor& bias) { return bias.defined() ? y - bias : y; }

// In double precision: LAPACK reports the workspace its eigensolver needs as a float, which in
// single precision rounds below the 2n² + 6n + 1 SSYEVD checks for once n reaches 4096 (Llama-2-7B's
// hidden size), and LibTorch 1.13 then fails with "Argument 8 has illegal value".
torch::Tensor GramPinv(const torch::Tensor& gram) {
  return torch::linalg_pinv(gram.to(torch::kFloat64), c10::optional<double>(), c10::optional<double>(),
                            /*hermitian=*/true)
      .to(gram.scalar_type());
}

// Minimum-norm least-squares fits W with inputs · Wᵀ ≈ outputs, given gram = inputsᵀ inputs, as
// the pseudo-inverse gives them but by Cholesky (a tenth of an eigendecomposition's cost at an
// 11008-wide MLP), factored once for every outputs fitted to the same inputs. Of the smaller of the
// two Gram matrices: with more tokens than inputs, the inputs' ((XᵀX)⁻¹XᵀY); with fewer, the
// tokens' own (Xᵀ(XXᵀ)⁻¹Y). When that one is singular, through its pseudo-inverse, since
// X⁺ = (XᵀX)⁺Xᵀ = Xᵀ(XXᵀ)⁺. That runs in double precision, so the smaller matrix matters: on a
// 7B-shaped block with 4096 tokens, the 11008² one took the job's peak from 5.3 GB to 8.2 GB.
class LeastSquares {
 public:
  LeastSquares(const torch::Tensor& gram, const torch::Tensor& inputs)
      : inputs_(inputs), primal_(inputs.size(0) >= inputs.size(1)) {
    const torch::Tensor smaller = primal_ ? gram : inputs.matmul(inputs.t());
    auto [lower, info] = torch::linalg_cholesky_ex(smaller);
    if (info.item<int64_t>() == 0) {
      lower_ = lower;
    } else {
      pinv_ = GramPinv(smaller);
    }
  }

  // W [out, in] for outputs [tokens, out].
  torch::Tensor Fit(const torch::Tensor& outputs) const {
    auto solve = [&](const torch::Tensor& rhs) {
      return lower_.defined() ? torch::cholesky_solve(rhs, lower_) : pinv_.matmul(rhs);
    };
    if (primal_) return solve(inputs_.t().matmul(outputs)).t();
    return inputs_.t().matmul(solve(outputs)).t();
  }

 private:
  const torch::Tensor& inputs_;
  const bool primal_;
  torch::Tensor lower_, pinv_;  // of the smaller Gram matrix: its Cholesky factor, or else its pseudo-inverse
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::Status SparseLlmPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  return hessians_.Prune(linear, target);
}

absl::Status SparseLlmPruning::PruneBlock(BlockToPrune& block) {
  hessians_.Clear();
  absl::Status status = PruneBlockLinears(block);
  hessians_.Clear();
  return status;
}

absl::Status SparseLlmPruning::PruneBlockLinears(BlockToPrune& block) {
  const MlpLayout& mlp = block.mlp;
  std::vector<LinearToPrune*> mlp_linears;
  for (auto& linear : block.linears) {
    if (linear.name == mlp.up || linear.name == mlp.down || linear.name == mlp.gate) {
      mlp_linears.push_back(&linear);
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    SHEARS_RETURN_IF_ERROR(PruneLinear(linear, block.target));
    linear.seconds = SecondsSince(start);
  }
  if (mlp_linears.empty()) return absl::OkStatus();  // a block without FFN (Nemotron-NAS's no_op)
  const auto start = std::chrono::steady_clock::now();
  SHEARS_RETURN_IF_ERROR(PruneMlp(block));
  // The MLP's linears are pruned together; each is charged an equal share of the time.
  for (auto* linear : mlp_linears) linear->seconds = SecondsSince(start) / mlp_linears.size();
  return absl::OkStatus();
}

absl::Status SparseLlmPruning::PruneMlp(BlockToPrune& block) {
  const MlpLayout& mlp = block.mlp;
  LinearToPrune* up = block.Find(mlp.up);
  LinearToPrune* down = block.Find(mlp.down);
  LinearToPrune* gate = mlp.gate.empty() ? nullptr : block.Find(mlp.gate);
  const torch::Tensor X = up != nullptr && up->inputs != nullptr ? up->inputs->Inputs() : torch::Tensor();
  if (down == nullptr || (!mlp.gate.empty() && gate == nullptr) || !X.defined()) {
    return absl::InternalError("SparseLLM: the block's MLP linears or their inputs are missing");
  }
  const bool gated = gate != nullptr;
  const Penalties k = Resolve(options_, gated);
  const SparsityTarget& target = block.target;
  auto act = [&](const torch::Tensor& x) { return Activate(mlp.activation, x); };
  const torch::Tensor up_bias = BiasOf(block, mlp.up_bias), gate_bias = BiasOf(block, mlp.gate_bias);

  // Start from the dense MLP's own variables; Y is what the pruned MLP must reproduce.
  torch::Tensor z = Apply(X, up->weight, up_bias);
  torch::Tensor s = gated ? Apply(X, gate->weight, gate_bias) : torch::Tensor();
  auto activation = [&] { return gated ? act(s) * z : act(z); };
  torch::Tensor p = activation();
  const torch::Tensor Y = p.matmul(down->weight.t());  // less the bias, which no variable changes
  SHEARS_ASSIGN_OR_RETURN(const SparseGptHessian* x_hessian, hessians_.Of(*up->inputs));
  std::optional<LeastSquares> x_fits;  // up's and gate's, factored once for every iteration
  const double tokens = static_cast<double>(X.size(0));

  // The pruned MLP's own output error on the calibration tokens. The auxiliary variables only
  // approximate the network under finite penalties, so an iteration can make the pruned MLP
  // worse; the iterate that reproduces Y best is kept (the reference code keeps the last).
  std::vector<LinearToPrune*> linears = {up, down};
  if (gated) linears.push_back(gate);
  // A linear's output on the calibration tokens begin..end, as its weight is at the time.
  auto output_on_rows = [&X](const torch::Tensor& weight, const torch::Tensor& bias) {
    return [&X, &weight, &bias](int64_t begin, int64_t end) { return Apply(X.slice(0, begin, end), weight, bias); };
  };
  // m = the up projection's output; with the gate's, what z and s are drawn to.
  const auto m = output_on_rows(up->weight, up_bias);
  auto output_error = [&] {
    double error = 0.0;
    ForEachChunk(X.size(0), [&](int64_t begin, int64_t end) {
      auto hidden = m(begin, end);
      auto activated = gated ? act(output_on_rows(gate->weight, gate_bias)(begin, end)) * hidden : act(hidden);
      error += (Y.slice(0, begin, end) - activated.matmul(down->weight.t())).square().sum().item<double>();
    });
    return error;
  };
  double best_error = std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best;

  for (int step = 0; step < k.iterations; ++step) {
    torch::Tensor p_gram = p.t().matmul(p);
    if (step > 0) {
      if (!x_fits) x_fits.emplace(up->inputs->gram(), X);
      up->weight.copy_(x_fits->Fit(LessBias(z, up_bias)));
      if (gated) gate->weight.copy_(x_fits->Fit(LessBias(s, gate_bias)));
      down->weight.copy_(LeastSquares(p_gram, p).Fit(Y));
    }
    SHEARS_RETURN_IF_ERROR(SparseGptPrune(up->weight, *x_hessian, target));
    if (gated) SHEARS_RETURN_IF_ERROR(SparseGptPrune(gate->weight, *x_hessian, target));
    {
      // p's Hessian is made from its Gram matrix in place, and dropped once down is pruned: at an
      // 11008-wide MLP each is 485 MB.
      p_gram.mul_(2.0 / tokens);
      SHEARS_ASSIGN_OR_RETURN(const SparseGptHessian p_hessian, PrepareHessian(std::move(p_gram)));
      SHEARS_RETURN_IF_ERROR(SparseGptPrune(down->weight, p_hessian, target));
    }
    if (const double error = output_error(); error < best_error) {
      best_error = error;
      best.clear();
      for (auto* linear : linears) best.push_back(linear->weight.clone());
    }

    // p = argmin β‖Y − p W_downᵀ‖² + γ‖p − σ‖²: one symmetric positive definite system shared
    // by all tokens, factored once and solved a chunk of tokens at a time.
    // Every update below goes a chunk of tokens at a time and in place: the variables' only
    // whole copies are z, s and p themselves.
    {  // the system and its factor, 485 MB each, go before the other variables are updated
      const torch::Tensor& Wd = down->weight;
      torch::Tensor system = Wd.t().matmul(Wd).mul_(k.beta);
      system.diagonal().add_(k.gamma);
      const auto factor = torch::linalg_cholesky(system);
      system.reset();
      ForEachChunk(p.size(0), [&](int64_t begin, int64_t end) {
        const auto z_rows = z.slice(0, begin, end);
        const auto activated = gated ? act(s.slice(0, begin, end)) * z_rows : act(z_rows);
        auto rhs = k.beta * Y.slice(0, begin, end).matmul(Wd) + k.gamma * activated;
        p.slice(0, begin, end).copy_(torch::cholesky_solve(rhs.t(), factor).t());
      });
    }

    if (gated) {
      // z in closed form given s; then s, which sits inside the SiLU, by gradient steps.
      ForEachChunk(z.size(0), [&](int64_t begin, int64_t end) {
        const auto a = act(s.slice(0, begin, end));
        z.slice(0, begin, end)
            .copy_((k.alpha * m(begin, end) + k.gamma * a * p.slice(0, begin, end)) / (k.alpha + k.gamma * a.square()));
      });
      Descend(s, output_on_rows(gate->weight, gate_bias),
              [&](const torch::Tensor& v, const torch::Tensor& gate_out, int64_t begin, int64_t end) {
                return k.alpha * (v - gate_out).square().sum() +
                       k.gamma * (p.slice(0, begin, end) - act(v) * z.slice(0, begin, end)).square().sum();
              });
    } else if (mlp.activation == MlpLayout::Activation::kRelu) {
      ForEachChunk(z.size(0), [&](int64_t begin, int64_t end) {
        z.slice(0, begin, end).copy_(ReluPreactivation(p.slice(0, begin, end), m(begin, end), k.alpha, k.gamma));
      });
    } else {
      Descend(z, m, [&](const torch::Tensor& v, const torch::Tensor& up_out, int64_t begin, int64_t end) {
        return k.alpha * (v - up_out).square().sum() +
               k.gamma * (p.slice(0, begin, end) - act(v)).square().sum();
      });
    }
  }
  for (size_t i = 0; i < linears.size(); ++i) linears[i]->weight.copy_(best[i]);
  return absl::OkStatus();
}

}  // namespace shears::engine
