"""A small byte-level BPE tokenizer trained on the synthetic corpus, shared by every tiny model.

Byte-level (like GPT-2 / GPT-NeoX, the tokenizers of the Mamba and Pythia checkpoints the ``spark`` profile uses), so
any text round-trips; ``VOCAB_SIZE`` tokens including three special tokens. Wrapped as a transformers
``PreTrainedTokenizerFast`` and saved with ``save_pretrained`` into every model folder, so
``AutoTokenizer.from_pretrained(model_dir)`` works offline.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 512
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS)  # ids 0, 1, 2


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the BPE on ``texts`` and wrap it; pad id 0, bos id 1, eos id 2, no special tokens added on encode."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
