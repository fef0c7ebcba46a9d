"""Reference forward pass of Gemma 2 and Gemma 3 (text), written from Hugging Face transformers'
public modeling code (modeling_gemma2.py, modeling_gemma3.py and their configuration classes, of
the 4.5x/5.x line), in plain PyTorch on the safetensors files, independent of the engine.

    logits(cfg, sd, ids) -> [B, T, vocab] float32

Covers: model_type gemma2 and gemma3_text; Gemma's RMSNorm (x * (1 + w), in float), embeddings
times sqrt(hidden_size), the GELU-tanh gated MLP, post-attention and pre/post-feedforward norms,
query_pre_attn_scalar, attn_logit_softcapping (Gemma 2: Gemma 3's attention does not pass it),
final_logit_softcapping, sliding and full layers (layer_types, else Gemma 2's alternation or
Gemma 3's sliding_window_pattern), Gemma 3's q/k norms and its two rope schedules (rope_theta with
rope_scaling for full layers and rope_local_base_freq for sliding ones, or rope_parameters by
layer type), attention_bias, tied embeddings.
"""
import torch
import torch.nn.functional as F

import hf_llama

GEMMA_FAMILY = ("gemma2", "gemma3_text")


def layer_types(cfg):
    if cfg.get("layer_types"):
        return cfg["layer_types"]
    pattern = cfg.get("sliding_window_pattern", 6) if cfg["model_type"] == "gemma3_text" else 2
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(cfg["num_hidden_layers"])]


def rope_by_type(cfg):
    """{layer type: (rope dict, theta)}."""
    if cfg["model_type"] == "gemma2":
        p, base = (cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}), cfg.get("rope_theta", 10000.0)
        base = p.get("rope_theta", base)
        return {"full_attention": (p, base), "sliding_attention": (p, base)}
    theta, local = cfg.get("rope_theta", 1e6), cfg.get("rope_local_base_freq", 1e4)
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict) and ("full_attention" in rp or "sliding_attention" in rp):
        full, sliding = rp.get("full_attention") or {}, rp.get("sliding_attention") or {}
        return {"full_attention": (full, full.get("rope_theta", theta)),
                "sliding_attention": (sliding, sliding.get("rope_theta", local))}
    return {"full_attention": (cfg.get("rope_scaling") or {}, theta),
            "sliding_attention": ({"rope_type": "default"}, local)}


def norm(x, w, eps):
    """Gemma2RMSNorm / Gemma3RMSNorm: normalized in float, then times (1 + weight)."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w.float())


def softcap(x, cap):
    return torch.tanh(x / cap) * cap if cap else x


def logits(cfg, sd, ids):
    gemma3 = cfg["model_type"] == "gemma3_text"
    B, T = ids.shape
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim", 256)
    eps = cfg.get("rms_norm_eps", 1e-6)
    scaling = cfg.get("query_pre_attn_scalar", 256) ** -0.5
    attn_cap = None if gemma3 else cfg.get("attn_logit_softcapping", 50.0)
    final_cap = cfg.get("final_logit_softcapping", None if gemma3 else 30.0)
    window = cfg.get("sliding_window", 4096)
    bias = cfg.get("attention_bias", False)
    types = layer_types(cfg)
    tables = {}
    for kind, (p, base) in rope_by_type(cfg).items():
        inv, scale = hf_llama.schedule(p, base, hd, cfg.get("max_position_embeddings"), T)
        freqs = torch.arange(T).float()[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        tables[kind] = (emb.cos() * scale, emb.sin() * scale)
    qi, ki = torch.arange(T)[:, None], torch.arange(T)[None, :]
    h = F.embedding(ids, sd["model.embed_tokens.weight"]) * torch.tensor(cfg["hidden_size"] ** 0.5)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        cos, sin = tables[types[i]]
        x = norm(h, sd[p + "input_layernorm.weight"], eps)
        q = hf_llama.linear(sd, p + "self_attn.q_proj", x, bias).view(B, T, -1, hd).transpose(1, 2)
        k = hf_llama.linear(sd, p + "self_attn.k_proj", x, bias).view(B, T, -1, hd).transpose(1, 2)
        v = hf_llama.linear(sd, p + "self_attn.v_proj", x, bias).view(B, T, -1, hd).transpose(1, 2)
        if gemma3:
            q = norm(q, sd[p + "self_attn.q_norm.weight"], eps)
            k = norm(k, sd[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + hf_llama.rotate_half(q) * sin
        k = k * cos + hf_llama.rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        allowed = ki <= qi
        if types[i] == "sliding_attention" and window is not None:
            allowed = allowed & (ki > qi - window)
        mask = torch.zeros(T, T).masked_fill(~allowed, float("-inf"))
        scores = softcap((q @ k.transpose(2, 3)) * scaling, attn_cap) + mask
        a = (torch.softmax(scores, dim=-1, dtype=torch.float32) @ v).transpose(1, 2).reshape(B, T, -1)
        a = hf_llama.linear(sd, p + "self_attn.o_proj", a, bias)
        h = h + norm(a, sd[p + "post_attention_layernorm.weight"], eps)
        x = norm(h, sd[p + "pre_feedforward_layernorm.weight"], eps)
        gate = F.gelu(hf_llama.linear(sd, p + "mlp.gate_proj", x, False), approximate="tanh")
        m = hf_llama.linear(sd, p + "mlp.down_proj", gate * hf_llama.linear(sd, p + "mlp.up_proj", x, False), False)
        h = h + norm(m, sd[p + "post_feedforward_layernorm.weight"], eps)
    h = norm(h, sd["model.norm.weight"], eps)
    return softcap(F.linear(h, sd.get("lm_head.weight", sd["model.embed_tokens.weight"])), final_cap)
