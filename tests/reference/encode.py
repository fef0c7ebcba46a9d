"""Reference token ids: bpe.py's Encoder over a text file.

    encode.py TOKENIZER_JSON TEXT_FILE OUT_FILE      # OUT_FILE: little-endian int64 ids
"""
import os
import sys

sys.path.insert(0, os.environ.get("SHEARS_REFERENCE_DIR", os.path.dirname(os.path.abspath(__file__))))
from bpe import Encoder  # noqa: E402

import struct  # noqa: E402

tokenizer, text_file, out = sys.argv[1:4]
ids = Encoder(tokenizer).encode(open(text_file, encoding="utf-8").read())
with open(out, "wb") as f:
    f.write(struct.pack("<%dq" % len(ids), *ids))
