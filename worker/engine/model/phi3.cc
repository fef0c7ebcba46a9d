#include "worker/engine/model/phi3.h"

namespace shears::engine {

std::vector<FusedLinear> Phi3::FusedGroups() const {
  return {{"self_attn.qkv_proj.weight", {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}},
          {"mlp.gate_up_proj.weight", {"mlp.gate_proj.weight", "mlp.up_proj.weight"}}};
}

}  // namespace shears::engine
