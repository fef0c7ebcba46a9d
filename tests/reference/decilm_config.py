"""Reads a model directory's config.json through the configuration class written beside it (its
auto_map's AutoConfig), as Hugging Face's AutoConfig does with trust_remote_code=True, and prints
what a loader sees of each block as JSON: {"blocks": [[kv_heads or 0, ffn width or 0], ...],
"round_trip": to_dict() reproduces config.json's block_configs}.

    decilm_config.py MODEL_DIR

Hugging Face transformers is not installed here: a stand-in for LlamaConfig (a PretrainedConfig
that keeps its keyword arguments as attributes, as PretrainedConfig does) takes its place, so that
what is checked is the written class itself. Each block's attributes are read as vLLM's
nemotron_nas.py reads them (attention.no_op, attention.n_heads_in_group, ffn.no_op, and ffn.ffn_mult
when the section has that attribute, else ffn.intermediate_size).
"""
import importlib.util
import json
import os
import sys
import types


class LlamaConfig:
    model_type = "llama"

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self):
        return dict(self.__dict__)


def install_stand_in():
    module = types.ModuleType("transformers.models.llama.configuration_llama")
    module.LlamaConfig = LlamaConfig
    for name in ("transformers", "transformers.models", "transformers.models.llama"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[module.__name__] = module


def main():
    model_dir = sys.argv[1]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    module_name, class_name = cfg["auto_map"]["AutoConfig"].split(".")
    install_stand_in()
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(model_dir, module_name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_class = getattr(module, class_name)
    assert config_class.model_type == cfg["model_type"], (config_class.model_type, cfg["model_type"])
    config = config_class(**cfg)
    blocks = []
    for block in config.block_configs:
        kv = 0 if block.attention.no_op else config.num_attention_heads // block.attention.n_heads_in_group
        if block.ffn.no_op:
            width = 0
        elif hasattr(block.ffn, "ffn_mult"):  # as vLLM asks: an ffn_mult of None fails here
            width = int(2 * block.ffn.ffn_mult * config.hidden_size / 3)
            width += -width % 256
        else:
            width = block.ffn.intermediate_size
        blocks.append([kv, width])
    round_trip = json.loads(json.dumps(config.to_dict()))["block_configs"] == cfg["block_configs"]
    print(json.dumps({"blocks": blocks, "round_trip": round_trip}))


if __name__ == "__main__":
    main()
