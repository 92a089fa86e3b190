"""CLIP's BPE tokenizer offline: transformers' CLIPTokenizer built from the vocabulary open_clip_torch installs
(bpe_simple_vocab_16e6.txt.gz, OpenAI's merges), so OWLv2, OmDet-Turbo and SAM 3 tokenize without the hub."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# OpenAI's CLIP keeps the first 48,894 merges of the file: 256 byte tokens, their 256 end-of-word forms, the merges
# and two special tokens make its 49,408-entry vocabulary.
N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def vocab_path() -> Path:
    """open_clip's vocabulary file, found without importing open_clip (whose import loads torch models)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is not installed: it ships CLIP's vocabulary, which OWLv2, OmDet-Turbo "
                          "and SAM 3 tokenize with. Install samtrack's concepts extra: pip install -e '.[concepts]'")
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


def byte_symbols() -> list[str]:
    """The 256 characters byte-level BPE writes bytes as (GPT-2's and CLIP's map), in vocabulary order: the
    printable Latin-1 bytes as themselves, in byte order, then the other bytes as the code points from 256 on."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(rest))]


@functools.cache
def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (token -> id, as OpenAI and transformers number them) and its merges, in rank order."""
    with gzip.open(vocab_path(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1:N_MERGES + 1]  # the first line is a version header
    merges = [tuple(line.split()) for line in lines]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(max_length: int, pad_token: str = EOS):
    """transformers' CLIPTokenizer on CLIP's vocabulary, padding and truncating to max_length tokens (OWLv2: 16
    with "!" as padding, OmDet-Turbo: 77, SAM 3: 32), as each model's hub tokenizer does."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=max_length)
