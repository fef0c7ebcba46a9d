#include "tests/support/model_layouts.h"

namespace shears::testing {

nlohmann::json Config(const std::string& model_type, const nlohmann::json& extra) {
  nlohmann::json c = {{"model_type", model_type},  {"vocab_size", kLayoutVocab},    {"hidden_size", 32},
                      {"intermediate_size", 48},    {"num_hidden_layers", 3},        {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},   {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},      {"tie_word_embeddings", false}};
  if (model_type == "qwen3") c["head_dim"] = 8;
  c.update(extra);
  return c;
}

std::vector<Layout> Layouts() {
  return {
      {"Llama", Config("llama")},
      // Llama 3.1/3.2/3.3: with head_dim 8 the four pairs' wavelengths (6, 63, 628, 6283) fall in
      // the kept (< 16), blended (16..64) and divided (> 64) bands of an original context of 64.
      {"Llama31RopeLlama3",
       Config("llama", {{"max_position_embeddings", 128},
                        {"rope_scaling",
                         {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}}}})},
      {"LlamaRopeLinearOldKey", Config("llama", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}})},
      {"LlamaRopeDynamic", Config("llama", {{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 4.0}}}})},
      {"LlamaRopeYarn", Config("llama", {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0},
                                                           {"original_max_position_embeddings", 16}}}})},
      {"LlamaRopeYarnUntruncatedMscale",
       Config("llama", {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 16.0},
                                          {"beta_slow", 2.0}, {"truncate", false}, {"mscale", 1.0},
                                          {"mscale_all_dim", 0.5}}}})},
      // Transformers computes LongRoPE for any Llama-shaped config that asks for it.
      {"LlamaRopeLongRope",
       Config("llama", {{"rope_scaling",
                         {{"rope_type", "longrope"}, {"original_max_position_embeddings", 16},
                          {"short_factor", {1.0, 1.5, 2.0, 2.5}}, {"long_factor", {1.0, 3.0, 9.0, 27.0}}}}})},
      {"LlamaBiasesAndHeadDim", Config("llama", {{"attention_bias", true}, {"mlp_bias", true}, {"head_dim", 16}})},
      {"LlamaRopeParametersForm",
       Config("llama", {{"rope_parameters", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 500000.0}}}})},
      {"MistralNemoHeadDimWindow", Config("mistral", {{"head_dim", 16}, {"sliding_window", 5}})},
      {"Qwen25WindowFromMaxWindowLayers",
       Config("qwen2", {{"use_sliding_window", true}, {"sliding_window", 4}, {"max_window_layers", 1}})},
      {"Qwen25WindowWrittenButUnused", Config("qwen2", {{"use_sliding_window", false}, {"sliding_window", 2}})},
      {"Qwen3LayerTypes",
       Config("qwen3", {{"head_dim", 16},
                        {"use_sliding_window", true},
                        {"sliding_window", 3},
                        {"layer_types", {"full_attention", "sliding_attention", "full_attention"}}})},
      {"Qwen3AttentionBiasTied", Config("qwen3", {{"attention_bias", true}, {"tie_word_embeddings", true}})},
      // Gemma 2: blocks 0 and 2 slide; caps small enough that they bind on these weights.
      {"Gemma2SoftCapsWindow",
       Config("gemma2", {{"head_dim", 8}, {"query_pre_attn_scalar", 16}, {"sliding_window", 5},
                         {"attn_logit_softcapping", 4.0}, {"final_logit_softcapping", 6.0},
                         {"tie_word_embeddings", true}})},
      {"Gemma2DefaultScalarAndCaps", Config("gemma2", {{"head_dim", 8}, {"sliding_window", 4}})},
      // Gemma 3 4B's layout: linear rope on the full blocks, rope_local_base_freq on the sliding.
      {"Gemma3PatternTwoRopes",
       Config("gemma3_text", {{"head_dim", 16},
                              {"query_pre_attn_scalar", 16},
                              {"sliding_window", 4},
                              {"sliding_window_pattern", 2},
                              {"rope_theta", 1000000.0},
                              {"rope_local_base_freq", 10000.0},
                              {"rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}},
                              {"final_logit_softcapping", nullptr},
                              {"attn_logit_softcapping", nullptr},
                              {"tie_word_embeddings", true}})},
      // As transformers 5 writes it: rope_parameters by layer type, layer_types listed.
      {"Gemma3RopeParametersByLayerType",
       Config("gemma3_text",
              {{"head_dim", 8},
               {"query_pre_attn_scalar", 8},
               {"sliding_window", 3},
               {"attention_bias", true},
               {"layer_types", {"full_attention", "sliding_attention", "sliding_attention"}},
               {"rope_parameters",
                {{"full_attention", {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 100000.0}}},
                 {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1000.0}}}}}})},
      // Phi-3-mini-4k: multi-head attention through one qkv_proj, gate_up_proj, a window on every block.
      {"Phi3Mini4kWindow", Config("phi3", {{"num_key_value_heads", 4}, {"sliding_window", 5}})},
      // Phi-3-mini-128k and Phi-3.5-mini: LongRoPE; windows longer than the original context of 16
      // take the long factors.
      {"Phi3LongRopeLongFactors",
       Config("phi3", {{"original_max_position_embeddings", 16},
                       {"rope_scaling",
                        {{"type", "longrope"}, {"short_factor", {1.0, 1.2, 1.5, 2.0}},
                         {"long_factor", {1.0, 2.5, 6.0, 15.0}}}}})},
      // Within the original context the short factors, under LongRoPE's old name su; the attention
      // factor from max_position_embeddings / original (4).
      {"Phi3SuRopeShortFactors",
       Config("phi3", {{"max_position_embeddings", 256},
                       {"original_max_position_embeddings", 64},
                       {"rope_scaling",
                        {{"type", "su"}, {"short_factor", {1.0, 1.3, 1.7, 3.0}}, {"long_factor", {2.0, 3.0, 5.0, 9.0}}}}})},
      // Phi-4-mini: 0.75 of each head rotates (6 of 8), grouped-query attention, tied embeddings,
      // LongRoPE, as transformers 5 writes it in rope_parameters.
      {"Phi4MiniPartialRotaryRopeParameters",
       Config("phi3", {{"tie_word_embeddings", true},
                       {"rope_parameters",
                        {{"rope_type", "longrope"},
                         {"rope_theta", 10000.0},
                         {"partial_rotary_factor", 0.75},
                         {"original_max_position_embeddings", 16},
                         {"short_factor", {1.0, 1.5, 3.0}},
                         {"long_factor", {1.0, 4.0, 16.0}}}}})},
      // NVIDIA's Nemotron-NAS (Llama-3.1-Nemotron-51B's layout, llama3 rope): each block its own
      // KV heads (2, then 1) and FFN (a width, none, and ffn_mult 1.0: int(2 · 32 / 3) rounded up
      // to 256); the last block without attention.
      {"NemotronNasPerBlockShapes",
       Config("nemotron-nas",
              {{"architectures", {"DeciLMForCausalLM"}},
               {"intermediate_size", nullptr},
               {"num_key_value_heads", nullptr},
               {"max_position_embeddings", 128},
               {"rope_scaling",
                {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                 {"original_max_position_embeddings", 64}}},
               {"block_configs",
                {{{"attention", {{"no_op", false}, {"replace_with_linear", false}, {"n_heads_in_group", 2}}},
                  {"ffn", {{"no_op", false}, {"replace_with_linear", false}, {"intermediate_size", 48}}}},
                 {{"attention", {{"no_op", false}, {"replace_with_linear", false}, {"n_heads_in_group", 4}}},
                  {"ffn", {{"no_op", true}, {"replace_with_linear", false}, {"ffn_mult", nullptr}}}},
                 {{"attention", {{"no_op", true}, {"replace_with_linear", false}, {"n_heads_in_group", nullptr}}},
                  {"ffn", {{"no_op", false}, {"replace_with_linear", false}, {"ffn_mult", 1.0}}}}}}})},
  };
}

}  // namespace shears::testing
