"""Wrong variants of lab 2.4.1's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

from autograder.checks.api import Misconception
from reference import kv_cache_bytes, mamba_state_bytes

MUTANTS = [
    Misconception("a constant", "kv_cache_bytes", "", lambda config, seq_len, batch_size=1, dtype_bytes=2: 2**30),
    Misconception("seq_len ignored", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: kv_cache_bytes(config, 4096, batch_size,
                                                                                     dtype_bytes)),
    Misconception("dtype_bytes ignored", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: kv_cache_bytes(config, seq_len, batch_size, 2)),
    Misconception("a float", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: float(kv_cache_bytes(config, seq_len,
                                                                                            batch_size, dtype_bytes))),
    Misconception("a constant", "mamba_state_bytes", "", lambda config, batch_size=1, dtype_bytes=2: 13_107_200),
    Misconception("dtype_bytes ignored", "mamba_state_bytes", "",
                  lambda config, batch_size=1, dtype_bytes=2: mamba_state_bytes(config, batch_size, 2)),
]
