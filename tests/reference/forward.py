"""Reference logits and perplexity for the engine's tests.

The Llama-shaped families (llama, mistral, qwen2, qwen3, phi3) go through hf_llama.py and Gemma's
(gemma2, gemma3_text) through hf_gemma.py, both written from Hugging Face's modeling code; NVIDIA's
Nemotron-NAS (nemotron-nas) through nemotron_nas.py, written from vLLM's; gpt2 through tinylm.py (the
project's measuring instrument); opt
through opt_forward below, written from the Hugging Face OPT model's definition. Usage:

    forward.py MODEL_DIR IDS_FILE N T OUT_PREFIX
    forward.py --jobs FILE [--no-logits]   (one "MODEL_DIR IDS_FILE N T OUT_PREFIX" a line)

IDS_FILE holds N*T little-endian int64 token ids. Writes OUT_PREFIX.logits (float32, N*T*vocab;
not with --no-logits, for real vocabularies) and OUT_PREFIX.ppl (the perplexity of the N windows,
as text).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.environ.get("SHEARS_REFERENCE_DIR", os.path.dirname(os.path.abspath(__file__))))
import hf_gemma  # noqa: E402
import hf_llama  # noqa: E402
import nemotron_nas  # noqa: E402
import tinylm  # noqa: E402


def opt_forward(sd, cfg, ids):
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // H
    pre = cfg.get("do_layer_norm_before", True)
    B, T = ids.shape
    h = F.embedding(ids, sd["model.decoder.embed_tokens.weight"])
    if "model.decoder.project_in.weight" in sd:
        h = h @ sd["model.decoder.project_in.weight"].t()
    positions = torch.arange(T) + 2
    h = h + sd["model.decoder.embed_positions.weight"][positions]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.decoder.layers.{i}."
        lin = lambda x, n: x @ sd[p + n + ".weight"].t() + sd[p + n + ".bias"]
        ln = lambda x, n: F.layer_norm(x, (d,), sd[p + n + ".weight"], sd[p + n + ".bias"], 1e-5)
        res = h
        x = ln(h, "self_attn_layer_norm") if pre else h
        q = (lin(x, "self_attn.q_proj") * hd ** -0.5).view(B, T, H, hd).transpose(1, 2)
        k = lin(x, "self_attn.k_proj").view(B, T, H, hd).transpose(1, 2)
        v = lin(x, "self_attn.v_proj").view(B, T, H, hd).transpose(1, 2)
        a = (torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v).transpose(1, 2).reshape(B, T, d)
        h = res + lin(a, "self_attn.out_proj")
        if not pre:
            h = ln(h, "self_attn_layer_norm")
        res = h
        x = ln(h, "final_layer_norm") if pre else h
        h = res + lin(torch.relu(lin(x, "fc1")), "fc2")
        if not pre:
            h = ln(h, "final_layer_norm")
    if "model.decoder.final_layer_norm.weight" in sd:
        h = F.layer_norm(h, (d,), sd["model.decoder.final_layer_norm.weight"], sd["model.decoder.final_layer_norm.bias"], 1e-5)
    if "model.decoder.project_out.weight" in sd:
        h = h @ sd["model.decoder.project_out.weight"].t()
    return h @ sd.get("lm_head.weight", sd["model.decoder.embed_tokens.weight"]).t()


def run(model_dir, ids_file, n, t, out, write_logits=True):
    cfg, sd = tinylm.load_model_dir(model_dir)
    ids = torch.frombuffer(bytearray(open(ids_file, "rb").read()), dtype=torch.int64).view(n, t)
    with torch.no_grad():
        family = cfg["model_type"]
        if family in ("opt", "nemotron-nas") + hf_llama.LLAMA_FAMILY + hf_gemma.GEMMA_FAMILY:
            if family == "opt":
                logits = opt_forward(sd, cfg, ids)
            elif family == "nemotron-nas":
                logits = nemotron_nas.logits(cfg, sd, ids)
            elif family in hf_gemma.GEMMA_FAMILY:
                logits = hf_gemma.logits(cfg, sd, ids)
            else:
                logits = hf_llama.logits(cfg, sd, ids)
            nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            ppl = math.exp(nll.item())
        else:
            logits = tinylm.forward(sd, cfg, ids)
            ppl = tinylm.perplexity(sd, cfg, ids.reshape(-1), t)
    if write_logits:
        logits.float().contiguous().numpy().tofile(out + ".logits")
    with open(out + ".ppl", "w") as f:
        f.write(repr(ppl))


def main():
    if sys.argv[1] == "--jobs":
        # One job a line, "MODEL_DIR IDS_FILE N T OUT_PREFIX": many models for one start of PyTorch.
        write_logits = "--no-logits" not in sys.argv[3:]
        for line in open(sys.argv[2]):
            if line.strip():
                a = line.split()
                run(a[0], a[1], int(a[2]), int(a[3]), a[4], write_logits)
        return
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])


if __name__ == "__main__":
    main()
