"""Writes a tiny Llama model with its own BPE tokenizer to a local folder, trained to be confident.

No model can be downloaded on our machines, so the project makes its own: 2 layers, hidden 256,
4 attention heads of dim 64 (the CPU attention kernel rejects head_dim 16), 2 KV heads, a byte-level
BPE tokenizer trained on generated text. About 9 MB.

With random weights the next-token distribution is nearly flat: any numerical noise flips the greedy
choice, so the quality guard could not tell a wrong config from noise, and n-gram speculation is never
accepted. So the model is trained for a few hundred steps (well under a minute on two cores) on a
patterned synthetic corpus: every token id has one successor, the successors form short cycles
(CYCLE tokens), and sequences follow them with an occasional jump to a random token. The model learns
"the next token is the successor of the last one" from any context, including the random token-id
prompts tuner sends, so its greedy answers are confident and repeat every CYCLE tokens, which n-gram
prompt lookup can draft. Deterministic and idempotent: an existing, complete model folder is left alone.

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
DONE_MARKER = ".tuner-model-ready-trained"  # a folder from before training (".tuner-model-ready") is rebuilt
FIRST_ID = 3  # <s>, </s>, <unk> never appear in the corpus: the model never ends an answer early
CYCLE = 8
STEPS, BATCH, SEQ_LEN, JUMP = 300, 32, 64, 0.05


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
    from transformers import LlamaConfig, LlamaForCausalLM

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
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".models/tiny-llama")
    if (out / DONE_MARKER).exists():
        print(f"tiny model ready: {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out)
    vocab_size = len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])
    write_model(out, vocab_size)
    (out / DONE_MARKER).write_text("ok\n")
    print(f"tiny model written: {out} (vocab {vocab_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
