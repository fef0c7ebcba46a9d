"""Reference pruning: Wanda, SparseGPT and SparseLLM as their published code runs them, to time
and score the engine against (bench/reference_table.sh).

Written from the authors' code, read with the search tool: SparseGPT's sparsegpt.py
(SparseGPT.add_batch, fasterprune) and llama.py (llama_sequential), Wanda's lib/prune.py
(prune_wanda, WrappedGPT.add_batch) and SparseLLM's model_utils.py (llama_sparsellm). As there,
a decoder block's calibration windows go through it one at a time with hooks on its linears,
every linear is pruned from the dense block's inputs, and the windows go through the pruned
block to give the next one its inputs. On the CPU, in float32: the authors' code runs in the
model's half precision on a GPU, where this runs on Debian's python3-torch.

    prune.py MODEL_DIR WINDOWS T METHOD [--sparsity S] [--nm N:M] [--owl M:LAMBDA] [--blocks K]
             [--threads N] [--save DIR] [--json OUT]
    prune.py --matmul-rate [--threads N]

WINDOWS holds little-endian int64 token ids, T a window (shears-windows writes them). METHOD is
wanda, sparsegpt or sparsellm. --blocks prunes only the first K blocks; --save writes the pruned
model (model.safetensors beside the config and tokenizer) for forward.py; --json writes the seconds per block,
split into the forward passes with their statistics and the solve. --owl gives each block its own
sparsity as OWL's prune_wanda_outlier does (Yin et al., its lib/prune.py, read with the search
tool): a first pass of the windows through the dense model, each block's Wanda scores |W|·√scaler_row
of all its linears together, the percentage above M times their mean (check_outlier_mean), those
min-max scaled to [0, 2λ] and centred on the density 1 - S; --json then holds them as "owl".
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.environ.get("SHEARS_REFERENCE_DIR", os.path.dirname(os.path.abspath(__file__))))
import hf_llama  # noqa: E402
import tinylm  # noqa: E402

MLP = ("mlp.up_proj", "mlp.gate_proj", "mlp.down_proj")


class SparseGPT:
    """One linear's Hessian 2/n Σ x xᵀ and the OBS solve over its columns (sparsegpt.py)."""

    def __init__(self, weight):
        self.weight = weight
        self.columns = weight.shape[1]
        self.H = torch.zeros(self.columns, self.columns)
        self.nsamples = 0

    def add_batch(self, inp):
        inp = inp.reshape(-1, inp.shape[-1]).t()
        self.H *= self.nsamples / (self.nsamples + 1)
        self.nsamples += 1
        inp = math.sqrt(2 / self.nsamples) * inp.float()
        self.H += inp.matmul(inp.t())

    def fasterprune(self, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
        W = self.weight.clone().float()
        H = self.H.clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        damp = percdamp * torch.mean(torch.diag(H))
        diag = torch.arange(self.columns)
        H[diag, diag] += damp
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        Hinv = torch.linalg.cholesky(H, upper=True)
        for i1 in range(0, self.columns, blocksize):
            i2 = min(i1 + blocksize, self.columns)
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            if prunen == 0:
                tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
                thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                mask1 = tmp <= thresh
            else:
                mask1 = torch.zeros_like(W1) == 1
            for i in range(i2 - i1):
                w = W1[:, i]
                d = Hinv1[i, i]
                if prunen != 0 and i % prunem == 0:
                    tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                    mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
                q = w.clone()
                q[mask1[:, i]] = 0
                Q1[:, i] = q
                err1 = (w - q) / d
                W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
                Err1[:, i] = err1
            W[:, i1:i2] = Q1
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
        self.weight.copy_(W)


class Wanda:
    """One linear's input norms 1/n Σ x² per column (WrappedGPT.add_batch) and Wanda's rule."""

    def __init__(self, weight):
        self.weight = weight
        self.scaler_row = torch.zeros(weight.shape[1])
        self.nsamples = 0

    def add_batch(self, inp):
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        self.scaler_row *= self.nsamples / (self.nsamples + 1)
        self.nsamples += 1
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples

    def prune(self, sparsity, prune_n=0, prune_m=0):
        W_metric = torch.abs(self.weight) * torch.sqrt(self.scaler_row.reshape((1, -1)))
        W_mask = torch.zeros_like(W_metric) == 1
        if prune_n != 0:
            for ii in range(W_metric.shape[1]):
                if ii % prune_m == 0:
                    tmp = W_metric[:, ii:(ii + prune_m)].float()
                    W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
        else:
            sort_res = torch.sort(W_metric, dim=-1, stable=True)
            indices = sort_res[1][:, :int(W_metric.shape[1] * sparsity)]
            W_mask.scatter_(1, indices, True)
        self.weight[W_mask] = 0


def sparsellm_mlp(gpts, mlp, sparsity, prunen, prunem, nsamples, alpha=5.0, beta=5.0, gamma=5.0, opt_epochs=8):
    """llama_sparsellm's alternating optimization of one gated MLP. mlp[name] holds the dense
    MLP's tensors the hooks kept, [features, tokens]: X (up's inputs), Y (down's outputs), z (up's
    outputs), s (gate's outputs), p (down's inputs)."""
    up, gate, down = gpts["mlp.up_proj"], gpts["mlp.gate_proj"], gpts["mlp.down_proj"]
    X, Y, z, s, p = mlp["X"], mlp["Y"], mlp["z"], mlp["s"], mlp["p"]
    Xinv = torch.pinverse(X)
    for opt_step in range(opt_epochs):
        if opt_step > 0:
            up.weight.copy_(torch.matmul(z, Xinv))
            down.weight.copy_(torch.matmul(Y, torch.pinverse(p)))
            gate.weight.copy_(torch.matmul(s, Xinv))
            # down's Hessian from the current p, window by window as add_batch builds it.
            tmp_H = torch.zeros_like(down.H)
            tmp_p = p.T.reshape((nsamples, -1, p.size(0)))
            for j in range(nsamples):
                tmp_inp = tmp_p[j].t()
                tmp_H *= j / (j + 1)
                tmp_inp = math.sqrt(2 / (j + 1)) * tmp_inp
                tmp_H += tmp_inp.matmul(tmp_inp.t())
            down.H.copy_(tmp_H)
        for name in MLP:
            gpts[name].fasterprune(sparsity, prunen=prunen, prunem=prunem)
        # p: a linear solve shared by every token.
        next_weight = down.weight
        av = torch.inverse(beta * next_weight.T.matmul(next_weight) + gamma * torch.eye(next_weight.shape[1]))
        p = torch.matmul(av, beta * next_weight.T.matmul(Y) + gamma * (F.silu(s) * z))
        # z in closed form.
        swish = F.silu(s)
        z = (up.weight.matmul(X) + swish * p) / (swish ** 2 + 1)
        # s: two gradient steps, 1000 tokens at a time.
        w = gate.weight
        for _ in range(2):
            for k in range(0, s.size(-1), 1000):
                chunk = slice(k, k + 1000)
                s_batch = s[:, chunk].clone().requires_grad_(True)
                with torch.enable_grad():
                    loss_s = alpha * torch.norm(s_batch - w.matmul(X[:, chunk])) ** 2
                    loss_s += gamma * torch.norm(p[:, chunk] - F.silu(s_batch) * z[:, chunk]) ** 2
                loss_s.backward()
                s[:, chunk] = (s_batch - 0.01 * s_batch.grad).detach()


def block_names(sd, i):
    prefix = f"model.layers.{i}."
    return prefix, [n[len(prefix):-len(".weight")] for n in sd if n.startswith(prefix) and n.endswith("proj.weight")]


def owl_sparsities(cfg, sd, ids, blocks, cos, sin, m, lamda, sparsity):
    """prune_wanda_outlier's first loop and its scaling: the block sparsities and the outlier
    percentages they came from."""
    inps = F.embedding(ids, sd["model.embed_tokens.weight"])
    ratios = []
    for i in range(blocks):
        prefix, names = block_names(sd, i)
        wrapped = {n: Wanda(sd[prefix + n + ".weight"]) for n in names}

        def hooked(sd_, name, x, bias):
            wrapped[name[len(prefix):]].add_batch(x)
            return hf_llama.linear(sd_, name, x, bias)

        inps = torch.cat([hf_llama.block(cfg, sd, i, inps[j:j + 1], cos, sin, lin=hooked) for j in range(ids.shape[0])])
        metric = torch.cat([(torch.abs(w.weight) * torch.sqrt(w.scaler_row.reshape((1, -1)))).flatten()
                            for w in wrapped.values()])
        ratios.append(100 * (metric > torch.mean(metric) * m).sum().item() / metric.numel())
    low, high = min(ratios), max(ratios)
    scaled = [(r - low) * (1 / (high - low) * lamda * 2) for r in ratios]
    mean = sum(scaled) / len(scaled)
    return [1 - (r - mean + (1 - sparsity)) for r in scaled], ratios


def prune(args):
    cfg, sd = tinylm.load_model_dir(args.model_dir)
    if cfg["model_type"] not in hf_llama.LLAMA_FAMILY or cfg["model_type"] == "phi3":
        raise SystemExit(f"prune.py: model_type {cfg['model_type']} is not in this reference")
    ids = torch.frombuffer(bytearray(open(args.windows, "rb").read()), dtype=torch.int64).view(-1, args.seq_len)
    nsamples = ids.shape[0]
    prunen, prunem = (0, 0)
    if args.nm:
        keep, prunem = (int(v) for v in args.nm.split(":"))
        prunen = prunem - keep  # the authors' N counts the weights pruned in each group of M
    blocks = min(args.blocks or cfg["num_hidden_layers"], cfg["num_hidden_layers"])
    cos, sin = hf_llama.rope_tables(cfg, args.seq_len)
    sparsities, outlier_percentages = [args.sparsity] * blocks, None
    if args.owl:
        m, lamda = (float(v) for v in args.owl.split(":"))
        sparsities, outlier_percentages = owl_sparsities(cfg, sd, ids, blocks, cos, sin, m, lamda, args.sparsity)
    inps = F.embedding(ids, sd["model.embed_tokens.weight"])
    timings = []
    for i in range(blocks):
        start = time.perf_counter()
        prefix, names = block_names(sd, i)
        kind = Wanda if args.method == "wanda" else SparseGPT
        gpts = {n: kind(sd[prefix + n + ".weight"]) for n in names}
        kept = {"X": [], "Y": [], "z": [], "s": [], "p": []}

        def hooked(sd_, name, x, bias):
            y = hf_llama.linear(sd_, name, x, bias)
            short = name[len(prefix):]
            gpts[short].add_batch(x)
            if args.method == "sparsellm" and short in MLP:
                rows = lambda t: t.reshape(-1, t.shape[-1])
                if short == "mlp.up_proj":
                    kept["X"].append(rows(x))
                    kept["z"].append(rows(y))
                elif short == "mlp.gate_proj":
                    kept["s"].append(rows(y))
                else:
                    kept["p"].append(rows(x))
                    kept["Y"].append(rows(y))
            return y

        for j in range(nsamples):
            hf_llama.block(cfg, sd, i, inps[j:j + 1], cos, sin, lin=hooked)
        solve_start = time.perf_counter()
        for name in names:
            if args.method == "wanda":
                gpts[name].prune(sparsities[i], prunen, prunem)
            elif args.method == "sparsegpt" or name not in MLP:
                gpts[name].fasterprune(sparsities[i], prunen=prunen, prunem=prunem)
        if args.method == "sparsellm":
            mlp = {k: torch.cat(v).t().contiguous() for k, v in kept.items()}
            sparsellm_mlp(gpts, mlp, args.sparsity, prunen, prunem, nsamples)
        solve = time.perf_counter() - solve_start
        outs = torch.cat([hf_llama.block(cfg, sd, i, inps[j:j + 1], cos, sin) for j in range(nsamples)])
        inps = outs
        seconds = time.perf_counter() - start
        timings.append({"block": i, "seconds": seconds, "solve_seconds": solve, "forward_seconds": seconds - solve})
        print(f"block {i}: {seconds:.1f} s (solve {solve:.1f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"method": args.method, "threads": torch.get_num_threads(), "windows": nsamples,
                       "seq_len": args.seq_len, "blocks": timings,
                       "owl": {"outlier_percent": outlier_percentages, "sparsity": sparsities} if args.owl else None},
                      f, indent=1)
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "tokenizer.model"):
            if os.path.exists(os.path.join(args.model_dir, name)):
                shutil.copy(os.path.join(args.model_dir, name), args.save)
        tinylm.save_safetensors(sd, os.path.join(args.save, "model.safetensors"))


def matmul_rate(n=4096, repeats=5):
    """GFLOP/s of an n×n float32 matmul, the best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a.matmul(b)
    best = min(timed(lambda: a.matmul(b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("windows", nargs="?")
    ap.add_argument("seq_len", nargs="?", type=int)
    ap.add_argument("method", nargs="?", choices=["wanda", "sparsegpt", "sparsellm"])
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm")
    ap.add_argument("--owl", help="M:LAMBDA, OWL's per-block sparsities")
    ap.add_argument("--blocks", type=int)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--save")
    ap.add_argument("--json")
    ap.add_argument("--matmul-rate", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.matmul_rate:
        print(f"{matmul_rate():.1f}")
        return
    if not (args.model_dir and args.windows and args.seq_len and args.method):
        ap.error("MODEL_DIR WINDOWS T METHOD are required")
    with torch.no_grad():
        prune(args)


if __name__ == "__main__":
    main()
