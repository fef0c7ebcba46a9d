"""Reference forward pass of the Llama-shaped families, written from Hugging Face transformers'
public modeling code (modeling_llama.py, modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py,
modular_phi3.py, configuration_qwen2/3.py, configuration_phi3.py and modeling_rope_utils.py of the
4.5x/5.x line), in plain PyTorch on the safetensors files, independent of the engine.

    logits(cfg, sd, ids) -> [B, T, vocab] float32

Covers: model_type llama, mistral, qwen2, qwen3, phi3; head_dim; attention_bias, mlp_bias, Qwen2's
q/k/v biases, Qwen3's q_norm/k_norm; Phi-3's fused qkv_proj and gate_up_proj (sliced from the
projections' outputs as Phi3Attention and Phi3MLP do), partial_rotary_factor; sliding windows
(Mistral's and Phi-3's on every layer; Qwen's by layer_types, or max_window_layers, with
use_sliding_window); rope_scaling (or rope_parameters) of types default, linear, dynamic, yarn,
llama3 and longrope (Phi-3 reads su and yarn as longrope); tied embeddings.
"""
import math

import torch
import torch.nn.functional as F

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3", "phi3")


def head_dim(cfg):
    default = 128 if cfg["model_type"] == "qwen3" else cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg.get("head_dim") or default


def rope_params(cfg):
    """(rope dict, theta): rope_parameters (newer configs) or rope_scaling with rope_theta beside it."""
    if isinstance(cfg.get("rope_parameters"), dict):
        p = dict(cfg["rope_parameters"])
        theta = p.get("rope_theta", cfg.get("rope_theta", 10000.0))
    else:
        p, theta = dict(cfg.get("rope_scaling") or {}), cfg.get("rope_theta", 10000.0)
    if cfg["model_type"] == "phi3" and p.get("rope_type", p.get("type")) in ("su", "yarn"):
        p["rope_type"] = "longrope"  # Phi3Config's backward compatibility
    return p, theta


def max_positions(cfg):
    return cfg.get("max_position_embeddings") or (4096 if cfg["model_type"] == "phi3" else None)


def rotary_dim(cfg):
    """int(head_dim * partial_rotary_factor): rope_parameters' factor, else config.json's."""
    p, _ = rope_params(cfg)
    return int(head_dim(cfg) * p.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))


def inv_freq_and_scale(cfg, seq_len):
    """modeling_rope_utils' ROPE_INIT_FUNCTIONS: the inverse frequencies and the attention factor."""
    p, base = rope_params(cfg)
    original = cfg.get("original_max_position_embeddings", 4096 if cfg["model_type"] == "phi3" else None)
    return schedule(p, base, rotary_dim(cfg), max_positions(cfg), seq_len, original)


def schedule(p, base, dim, maxpos, seq_len, original=None):
    """One rope parameter dict `p` (rope_type, factor, ...) with rope_theta `base`; `original` is
    config.json's original_max_position_embeddings (LongRoPE)."""
    kind = p.get("rope_type", p.get("type", "default"))
    exps = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    inv = 1.0 / (base ** exps)
    if kind == "default":
        return inv, 1.0
    if kind == "longrope":
        # _compute_longrope_parameters with _longrope_frequency_update's choice of factors: the
        # long ones once the sequence is longer than the original context.
        orig = p.get("original_max_position_embeddings") or original or maxpos
        factor = p.get("factor") or maxpos / orig
        attn = p.get("attention_factor")
        if attn is None:
            attn = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = torch.tensor(p["long_factor"] if seq_len > orig else p["short_factor"], dtype=torch.float32)
        return 1.0 / (ext * base ** exps), attn
    factor = p["factor"]
    if kind == "linear":
        return inv / factor, 1.0
    if kind == "dynamic":
        # _compute_dynamic_ntk_parameters with dynamic_rope_update's seq_len: the base grows only
        # once the sequence is longer than max_position_embeddings.
        seq_len = max(seq_len, maxpos)
        base = base * ((factor * seq_len / maxpos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** exps), 1.0
    if kind == "llama3":
        old = p["original_max_position_embeddings"]
        lo, hi = p["low_freq_factor"], p["high_freq_factor"]
        lo_wave, hi_wave = old / lo, old / hi
        wave = 2 * math.pi / inv
        scaled = torch.where(wave > lo_wave, inv / factor, inv)
        smooth = (old / wave - lo) / (hi - lo)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wave < hi_wave) * ~(wave > lo_wave)
        return torch.where(medium, blended, scaled), 1.0
    if kind == "yarn":
        original = p.get("original_max_position_embeddings") or maxpos

        def mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        attn = p.get("attention_factor")
        if attn is None:
            ms, ms_all = p.get("mscale"), p.get("mscale_all_dim")
            attn = mscale(factor, ms) / mscale(factor, ms_all) if ms and ms_all else mscale(factor)
        fast, slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

        def corr(rot):
            return (dim * math.log(original / (rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr(fast), corr(slow)
        if p.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        pos = base ** (torch.arange(0, dim, 2).float() / dim)
        extra, inter = 1.0 / pos, 1.0 / (factor * pos)
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        keep = 1 - ramp
        return inter * (1 - keep) + extra * keep, attn
    raise ValueError(f"rope_type {kind} is not in this reference")


def layer_windows(cfg):
    """Each layer's sliding window, or None for full attention."""
    L = cfg["num_hidden_layers"]
    t = cfg["model_type"]
    if t in ("mistral", "phi3"):
        return [cfg.get("sliding_window")] * L
    if t in ("qwen2", "qwen3"):
        window = cfg.get("sliding_window", 4096) if cfg.get("use_sliding_window", False) else None
        types = cfg.get("layer_types") or [
            "sliding_attention" if window is not None and i >= cfg.get("max_window_layers", 28) else "full_attention"
            for i in range(L)]
        return [window if types[i] == "sliding_attention" else None for i in range(L)]
    return [None] * L


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-b, a), dim=-1)


def rotate(x, cos, sin):
    """Phi-3's apply_rotary_pos_emb: the leading cos.shape[-1] dimensions rotate, the rest pass."""
    r = cos.shape[-1]
    return torch.cat((x[..., :r] * cos + rotate_half(x[..., :r]) * sin, x[..., r:]), dim=-1)


def linear(sd, name, x, bias):
    """nn.Linear with the bias its config gives it (a tensor in the file the config does not name
    is not read, as Hugging Face leaves it out)."""
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"] if bias else None)


def biases(cfg):
    """(q/k/v, o, mlp): which projections the family's modules build with bias=True."""
    t = cfg["model_type"]
    if t == "qwen2":
        return True, False, False
    if t in ("mistral", "phi3"):
        return False, False, False
    attention = cfg.get("attention_bias", False)
    return attention, attention, t == "llama" and cfg.get("mlp_bias", False)


def rope_tables(cfg, T):
    """cos and sin [T, rotary dims] of positions 0..T-1 (LlamaRotaryEmbedding)."""
    inv, scale = inv_freq_and_scale(cfg, T)
    freqs = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scale, emb.sin() * scale


def block(cfg, sd, i, h, cos, sin, lin=linear):
    """Decoder layer i on hidden states h [B, T, hidden]. Every projection goes through
    lin(sd, name, x, bias), so that a caller can watch a linear's inputs and outputs as forward
    hooks do (tests/reference/prune.py)."""
    t = cfg["model_type"]
    B, T = h.shape[:2]
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    hd = head_dim(cfg)
    eps = cfg.get("rms_norm_eps", 1e-5 if t == "phi3" else 1e-6)
    window = layer_windows(cfg)[i]
    qkv_b, o_b, mlp_b = biases(cfg)
    qi, ki = torch.arange(T)[:, None], torch.arange(T)[None, :]
    p = f"model.layers.{i}."
    x = rms(h, sd[p + "input_layernorm.weight"], eps)
    if t == "phi3":
        qkv = lin(sd, p + "self_attn.qkv_proj", x, False)
        q, k, v = qkv[..., :H * hd], qkv[..., H * hd:(H + KV) * hd], qkv[..., (H + KV) * hd:]
    else:
        q = lin(sd, p + "self_attn.q_proj", x, qkv_b)
        k = lin(sd, p + "self_attn.k_proj", x, qkv_b)
        v = lin(sd, p + "self_attn.v_proj", x, qkv_b)
    q, k, v = q.view(B, T, -1, hd), k.view(B, T, -1, hd), v.view(B, T, -1, hd).transpose(1, 2)
    if t == "qwen3":
        q = rms(q, sd[p + "self_attn.q_norm.weight"], eps)
        k = rms(k, sd[p + "self_attn.k_norm.weight"], eps)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
    allowed = ki <= qi
    if window is not None:
        allowed = allowed & (ki > qi - window)
    mask = torch.zeros(T, T).masked_fill(~allowed, float("-inf"))
    att = torch.softmax((q @ k.transpose(2, 3)) * hd ** -0.5 + mask, dim=-1, dtype=torch.float32)
    a = (att @ v).transpose(1, 2).reshape(B, T, -1)
    h = h + lin(sd, p + "self_attn.o_proj", a, o_b)
    x = rms(h, sd[p + "post_attention_layernorm.weight"], eps)
    if t == "phi3":
        gate, up = lin(sd, p + "mlp.gate_up_proj", x, False).chunk(2, dim=-1)
    else:
        gate, up = lin(sd, p + "mlp.gate_proj", x, mlp_b), lin(sd, p + "mlp.up_proj", x, mlp_b)
    m = up * F.silu(gate)
    return h + lin(sd, p + "mlp.down_proj", m, mlp_b)


def logits(cfg, sd, ids):
    t = cfg["model_type"]
    cos, sin = rope_tables(cfg, ids.shape[1])
    eps = cfg.get("rms_norm_eps", 1e-5 if t == "phi3" else 1e-6)
    h = F.embedding(ids, sd["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        h = block(cfg, sd, i, h, cos, sin)
    h = rms(h, sd["model.norm.weight"], eps)
    return F.linear(h, sd.get("lm_head.weight", sd["model.embed_tokens.weight"]))
