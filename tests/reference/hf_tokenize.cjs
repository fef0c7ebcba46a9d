// The tokenizer oracle: Hugging Face's own JavaScript tokenizers (@huggingface/tokenizers, a port
// of the Rust library that reads the same tokenizer.json) encoding text files, special tokens
// included, as the engine's datasets are.
//
//   node hf_tokenize.cjs NODE_MODULES TOKENIZER_DIR TEXT_FILE OUT_IDS
//   node hf_tokenize.cjs NODE_MODULES --jobs JOBS   (lines "TOKENIZER_DIR<tab>TEXT_FILE<tab>OUT_IDS")
//
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json; OUT_IDS gets int64 little-endian ids.
const fs = require("fs");
const path = require("path");
const [modules, ...args] = process.argv.slice(2);
const { Tokenizer } = require(path.resolve(modules, "@huggingface/tokenizers"));

const loaded = new Map();  // one tokenizer per directory, however many texts
function tokenizerOf(dir) {
  if (!loaded.has(dir)) {
    const read = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
    loaded.set(dir, new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json")));
  }
  return loaded.get(dir);
}

function encode(dir, textFile, out) {
  const ids = tokenizerOf(dir).encode(fs.readFileSync(textFile, "utf8")).ids;
  fs.writeFileSync(out, Buffer.from(BigInt64Array.from(ids.map(BigInt)).buffer));
}

if (args[0] === "--jobs") {
  for (const line of fs.readFileSync(args[1], "utf8").split("\n")) {
    if (line.trim()) encode(...line.split("\t"));
  }
} else {
  encode(...args);
}
