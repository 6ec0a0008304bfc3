"""Wrong variants of lab 2.4.5's perplexity that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

from autograder.checks.api import Misconception
from autograder.checks.trusted import trusted_model
from autograder.sandbox import Model
from reference import perplexity


def _model(model):
    return trusted_model(model) if isinstance(model, Model) else model


MUTANTS = [
    Misconception("a constant", "perplexity", "", lambda model, input_ids, max_length, stride: 42.0),
    Misconception("stride ignored", "perplexity", "",
                  lambda model, input_ids, max_length, stride: perplexity(_model(model), input_ids, max_length,
                                                                          max_length)),
    Misconception("max_length halved", "perplexity", "",
                  lambda model, input_ids, max_length, stride: perplexity(_model(model), input_ids, max_length // 2,
                                                                          min(stride, max_length // 2))),
]
