"""Reference ids for a SentencePiece model, as Hugging Face's LlamaTokenizer gives them: BOS, then
the pieces of the text, from Debian's python3-sentencepiece (the library itself).

    spm_encode.py TOKENIZER_MODEL TEXT_FILE OUT_FILE     # OUT_FILE: little-endian int64 ids
"""
import struct
import sys

import sentencepiece as spm

model, text_file, out = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model)
ids = [sp.bos_id()] + sp.encode(open(text_file, encoding="utf-8").read())
with open(out, "wb") as f:
    f.write(struct.pack("<%dq" % len(ids), *ids))
