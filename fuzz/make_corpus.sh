#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the repository's own fixtures
# and the KJV (Debian's bible-kjv); run from the repository root. The output is committed; rerun
# this after a format changes. Every seed is small: libFuzzer mutates from them.
set -euo pipefail
out=fuzz/corpus
rm -rf "$out"
mkdir -p "$out"/{safetensors_fuzzer,model_dir_fuzzer,model_config_fuzzer,tokenizer_json_fuzzer,tokenizer_model_fuzzer,dataset_fuzzer,job_spec_fuzzer,s3_xml_fuzzer}

python3 - "$out" <<'PY'
import json, struct, sys, os
out = sys.argv[1]
def w(path, data):
    with open(os.path.join(out, path), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata: header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data

w("safetensors_fuzzer/two_tensors", safetensors({
    "model.embed_tokens.weight": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "model.norm.weight": ("BF16", [3], b"\x80\x3f" * 3)}, {"format": "pt"}))
w("safetensors_fuzzer/empty", safetensors({}))
w("safetensors_fuzzer/i8_scalar", safetensors({"s": ("I8", [], b"\x07")}))

w("model_dir_fuzzer/index", json.dumps({"metadata": {"total_size": 4}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}))
w("model_dir_fuzzer/two_shards", json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors", "v": "model-00002-of-00002.safetensors"}}))

for model in ("tiny-llama", "tiny-gpt2", "tiny-llama-deep", "tiny-llama-mha"):
    with open(f"tests/data/{model}/config.json", "rb") as f:
        w(f"model_config_fuzzer/{model}.json", f.read())
w("model_config_fuzzer/qwen3_rope.json", json.dumps({"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 176,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}, "max_position_embeddings": 512}))

with open("tests/data/tiny-llama/tokenizer.json", "rb") as f:
    w("tokenizer_json_fuzzer/tiny-llama.json", f.read())
w("tokenizer_json_fuzzer/small_bpe.json", json.dumps({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<unk>": 3}, "merges": ["a b"], "unk_token": "<unk>"},
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\\\s+"}, "behavior": "Isolated"},
    "added_tokens": [{"id": 3, "content": "<unk>", "special": True}]}))

ids = list(range(40)) * 3
w("dataset_fuzzer/jsonl", b"\x00" + b'{"text": "In the beginning God created the heaven and the earth."}\n{"text": "And the earth was without form."}\n')
npy_header = "{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }" % len(ids)
npy_header += " " * (118 - len(npy_header)) + "\n"
w("dataset_fuzzer/npy", b"\x01" + b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header.encode() + struct.pack(f"<{len(ids)}H", *ids))
w("dataset_fuzzer/u16_bin", b"\x02" + struct.pack(f"<{len(ids)}H", *ids))
w("dataset_fuzzer/u32_bin", b"\x03" + struct.pack(f"<{len(ids)}I", *ids))
w("dataset_fuzzer/text", b"\x04" + b"And God said, Let there be light: and there was light.\n")

w("job_spec_fuzzer/magnitude.json", json.dumps({"model_uri": "file:///models/tiny", "method": "METHOD_MAGNITUDE",
    "target_sparsity": 0.5, "output": {"uri": "s3://bucket/out"}, "labels": {"team": "a"}}))
w("job_spec_fuzzer/wanda_nm.json", json.dumps({"model_uri": "hf://org/model@main", "method": "METHOD_WANDA",
    "structure": "STRUCTURE_N_M", "n_m": {"n": 2, "m": 4}, "calibration": {"dataset_uri": "https://data/kjv.txt",
    "num_samples": 128, "seq_len": 2048}, "output": {"uri": "file:///out/m", "format": "OUTPUT_FORMAT_SPARSE_24_BITMASK"}}))
w("job_spec_fuzzer/gum.json", json.dumps({"model_uri": "file:///m", "method": "METHOD_GUM", "structure": "STRUCTURE_FFN_NEURONS",
    "target_sparsity": 0.3, "fine_tune": {"dataset_uri": "file:///d.txt", "steps": 10, "seq_len": 64},
    "evaluation": {"dataset_uri": "file:///e.txt", "seq_len": 128}, "output": {"uri": "file:///o"}}))

w("s3_xml_fuzzer/list_page", """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><Prefix>m/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>
<NextContinuationToken>abc</NextContinuationToken>
<Contents><Key>m/config.json</Key><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>398</Size></Contents>
<Contents><Key>m/model.safetensors</Key><ETag>&quot;x-2&quot;</ETag><Size>1420688</Size></Contents>
</ListBucketResult>""")
w("s3_xml_fuzzer/upload", "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>")
PY

# SentencePiece models, trained here on Genesis 1-10 of the KJV by Debian's spm_train.
tmp=$(mktemp -d)
bible -f gen1:1-gen10:32 > "$tmp/kjv.txt"
/usr/bin/spm_train --input="$tmp/kjv.txt" --model_prefix="$tmp/spm" --vocab_size=200 --model_type=bpe \
  --character_coverage=1.0 --normalization_rule_name=identity --minloglevel=2 >/dev/null
cp "$tmp/spm.model" "$out/tokenizer_model_fuzzer/kjv_bpe_200.model"
/usr/bin/spm_train --input="$tmp/kjv.txt" --model_prefix="$tmp/uni" --vocab_size=150 --model_type=unigram \
  --character_coverage=1.0 --normalization_rule_name=identity --minloglevel=2 >/dev/null
cp "$tmp/uni.model" "$out/tokenizer_model_fuzzer/kjv_unigram_150.model"
rm -rf "$tmp"
du -sh "$out"
