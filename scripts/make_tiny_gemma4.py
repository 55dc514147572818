"""Writes a tiny model of the seed's own architecture, Gemma 4 MoE, with the project's tokenizer, trained like the
tiny Llama (scripts/make_tiny_model.py): the second stand-in model, for the memory fit's calibration on hybrid
attention and for the Gemma 4 quickstart (studies/quickstart-gemma4-cpu.yaml).

    6 layers, hidden 256, 4 attention heads; 5 sliding-window layers (window 128) of 2 KV heads x 64 and one global
    layer of 1 KV head x 128 whose V is its K (attention_k_eq_v); 8 experts, top-2, beside a dense MLP;
    per-layer input embeddings off. vLLM 0.32 CPU serves it as Gemma4ForCausalLM.

Written with transformers' own Gemma4TextConfig and saved as transformers writes it today: the global layer's head
count and head size in `per_layer_config`, not the published `num_global_key_value_heads` / `global_head_dim`
(tuner reads both; tests/fixtures/gemma4 holds the published layout of the same model). About 20 MB; a minute or two
of training on two cores. Deterministic and idempotent: an existing, complete folder is left alone.

Runs in the vLLM environment:
    .venv-vllm/bin/python scripts/make_tiny_gemma4.py .models/tiny-gemma4
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_model as base

DONE_MARKER = ".tuner-model-ready-v1"
SLIDING_WINDOW = 128


def gemma4_config(vocab_size: int):
    from transformers import Gemma4TextConfig

    return Gemma4TextConfig(
        vocab_size=vocab_size, vocab_size_per_layer_input=vocab_size, hidden_size_per_layer_input=0,
        hidden_size=256, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, global_head_dim=128, num_global_key_value_heads=1, attention_k_eq_v=True,
        sliding_window=SLIDING_WINDOW, layer_types=["sliding_attention"] * 5 + ["full_attention"],
        enable_moe_block=True, num_experts=8, top_k_experts=2, moe_intermediate_size=128,
        max_position_embeddings=base.MAX_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=2,
        tie_word_embeddings=True, architectures=["Gemma4ForCausalLM"],
    )


def write_model(out: Path, vocab_size: int) -> None:
    import torch
    from transformers import Gemma4ForCausalLM, GenerationConfig

    torch.manual_seed(0)
    config = gemma4_config(vocab_size)
    model = Gemma4ForCausalLM(config)
    accuracy = base.train(model, vocab_size)
    print(f"trained {base.STEPS} steps: next token = successor in {accuracy:.1%} of held-out positions")
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=2, do_sample=True,
                                               temperature=base.TEMPERATURE, top_p=base.TOP_P)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)


def main(argv: list[str]) -> int:
    return base.build(Path(argv[1] if len(argv) > 1 else ".models/tiny-gemma4"), write_model, DONE_MARKER,
                      "tiny Gemma 4")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
