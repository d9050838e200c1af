"""A tiny random-weight llama model in GGUF, written with the ``gguf`` package (no download).

Byte-level BPE tokenizer (GPT-2's byte-to-unicode map, 256 byte tokens, a few merges of common
English pairs), the ChatML specials and template, 2 layers of width 64. It answers garbage —
which is the point: only a server that enforces the verdict schema gets verdicts out of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PAIRS = [
    "th",
    "he",
    "in",
    "er",
    "an",
    "re",
    "on",
    "at",
    "en",
    "nd",
    "ti",
    "es",
    "or",
    "te",
    "of",
    "ed",
    "is",
    "it",
    "al",
    "ar",
    "st",
    "to",
    "nt",
    "ng",
    "se",
    "ha",
    "as",
    "ou",
    "io",
    "le",
    "ve",
    "co",
    "me",
    "de",
    "hi",
    "ri",
    "ro",
    "ic",
    "ne",
    "ea",
    "ra",
    "ce",
]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (what byte-level BPE vocabularies hold)."""
    visible = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    )
    chars = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(visible, chars, strict=True)}


def vocabulary() -> tuple[list[str], list[int], list[str], dict[str, int]]:
    """(tokens, token types, merges, special ids)."""
    bmap = byte_to_unicode()
    tokens = [bmap[b] for b in range(256)]
    merges = []
    for pair in _PAIRS:
        merges.append(f"{pair[0]} {pair[1]}")
        tokens.append(pair)
    space = bmap[ord(" ")]
    for letter in "tacsoiwpbmfdh":
        merges.append(f"{space} {letter}")
        tokens.append(space + letter)
    types = [1] * len(tokens)
    specials = {}
    for name in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        specials[name] = len(tokens)
        tokens.append(name)
        types.append(3)  # control
    return tokens, types, merges, specials


SERVER_PACKAGES = ("llama_cpp", "gguf", "uvicorn", "sse_starlette")


def missing_server_packages() -> list[str]:
    """What the real-server tests need and is not importable (the ``llm-server`` extra)."""
    import importlib.util

    return [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]


def missing_reason(missing: list[str]) -> str:
    return (
        f"needs {', '.join(missing)} for the real inference server: "
        "pip install -e '.[llm-server]' (compiles llama.cpp once, ~15-30 min on 2 cores)"
    )


def nul_token_id() -> int:
    """The token of the byte 0x00 (what ``logit_bias`` raises to make the model emit NULs)."""
    return 0


def write_tiny_llama(
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    context_length: int = 8192,
    seed: int = 0,
) -> Path:
    import gguf

    tokens, types, merges, specials = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(specials["<|im_start|>"])
    writer.add_eos_token_id(specials["<|im_end|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    # numpy shapes are ggml's dimensions reversed: (out, in) for a matrix.
    writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, n_embd, scale=1.0))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
