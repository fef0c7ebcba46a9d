"""Reference forward pass of the Nemotron-NAS layout (NVIDIA's DeciLM: architectures
["DeciLMForCausalLM"], model_type "nemotron-nas"), written from vLLM's
vllm/model_executor/models/nemotron_nas.py and NVIDIA's configuration_decilm.py / block_config.py,
in plain PyTorch on the safetensors files, independent of the engine.

    logits(cfg, sd, ids) -> [B, T, vocab] float32

A Llama (RMSNorm, RoPE with rope_scaling as hf_llama.py computes it, SwiGLU) whose decoder layers
each read block_configs[i]:
- attention.no_op: the layer has no attention, and no input_layernorm: the residual stream passes;
  otherwise num_attention_heads query heads over num_attention_heads // n_heads_in_group KV heads;
- ffn.no_op: no MLP and no post_attention_layernorm; otherwise an MLP of width
  _ffn_mult_to_intermediate_size(ffn_mult) = int(2 * ffn_mult * hidden_size / 3) rounded up to a
  multiple of 256 when the section has an ffn_mult key (vLLM's hasattr), else ffn.intermediate_size.
replace_with_linear is refused, as vLLM refuses it.
"""
import torch
import torch.nn.functional as F

import hf_llama


def ffn_width(cfg, ffn):
    # vLLM asks hasattr(ffn, "ffn_mult"): an ffn_mult key, even null, is read.
    if "ffn_mult" in ffn:
        width = int(2 * ffn["ffn_mult"] * cfg["hidden_size"] / 3)
        return width + (-width % 256)
    return ffn["intermediate_size"]


def kv_heads(cfg, attention):
    return cfg["num_attention_heads"] // attention["n_heads_in_group"]


def attention(cfg, sd, p, x, cos, sin, kv):
    B, T = x.shape[:2]
    H, hd = cfg["num_attention_heads"], hf_llama.head_dim(cfg)
    bias = cfg.get("attention_bias", False)
    q = hf_llama.linear(sd, p + "self_attn.q_proj", x, bias).view(B, T, H, hd).transpose(1, 2)
    k = hf_llama.linear(sd, p + "self_attn.k_proj", x, bias).view(B, T, kv, hd).transpose(1, 2)
    v = hf_llama.linear(sd, p + "self_attn.v_proj", x, bias).view(B, T, kv, hd).transpose(1, 2)
    q, k = hf_llama.rotate(q, cos, sin), hf_llama.rotate(k, cos, sin)
    k, v = k.repeat_interleave(H // kv, 1), v.repeat_interleave(H // kv, 1)
    mask = torch.full((T, T), float("-inf")).triu(1)
    att = torch.softmax((q @ k.transpose(2, 3)) * hd ** -0.5 + mask, dim=-1, dtype=torch.float32)
    a = (att @ v).transpose(1, 2).reshape(B, T, -1)
    return hf_llama.linear(sd, p + "self_attn.o_proj", a, bias)


def mlp(cfg, sd, p, x, width):
    bias = cfg.get("mlp_bias", False)
    gate = hf_llama.linear(sd, p + "mlp.gate_proj", x, bias)
    up = hf_llama.linear(sd, p + "mlp.up_proj", x, bias)
    assert up.shape[-1] == width, f"{p}mlp.up_proj has {up.shape[-1]} rows, block_configs says {width}"
    return hf_llama.linear(sd, p + "mlp.down_proj", F.silu(gate) * up, bias)


def logits(cfg, sd, ids):
    eps = cfg.get("rms_norm_eps", 1e-6)
    cos, sin = hf_llama.rope_tables(dict(cfg, model_type="llama"), ids.shape[1])
    h = F.embedding(ids, sd["model.embed_tokens.weight"])
    for i, block in enumerate(cfg["block_configs"]):
        p = f"model.layers.{i}."
        att, ffn = block["attention"], block["ffn"]
        if att.get("replace_with_linear") or ffn.get("replace_with_linear"):
            raise ValueError("replace_with_linear is not served by vLLM's DeciLM")
        if not att.get("no_op"):
            x = hf_llama.rms(h, sd[p + "input_layernorm.weight"], eps)
            h = h + attention(cfg, sd, p, x, cos, sin, kv_heads(cfg, att))
        if not ffn.get("no_op"):
            x = hf_llama.rms(h, sd[p + "post_attention_layernorm.weight"], eps)
            h = h + mlp(cfg, sd, p, x, ffn_width(cfg, ffn))
    h = hf_llama.rms(h, sd["model.norm.weight"], eps)
    return F.linear(h, sd.get("lm_head.weight", sd["model.embed_tokens.weight"]))
