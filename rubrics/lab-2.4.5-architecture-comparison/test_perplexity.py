"""Hidden checks for perplexity(model, input_ids, max_length, stride): the student's number on the lab's tiny models
(loaded in the sandbox from Model(name)) against reference.perplexity on the same model loaded here, to 1e-4 as
the lab says."""

from __future__ import annotations

from autograder.checks.api import expect_number
from autograder.sandbox import Model
from reference import perplexity as reference_perplexity


def check(student, trusted_model, name, ids, max_length, stride):
    got = student.perplexity(Model(name), ids, max_length, stride)
    want = reference_perplexity(trusted_model(name), ids, max_length, stride)
    expect_number(got, want, name=f"perplexity of the {name} model (max_length={max_length}, stride={stride})",
                  rtol=1e-4)


def test_ppl_overlapping_windows(student, trusted_model, text_ids):
    check(student, trusted_model, "llama", text_ids(120), 32, 12)


def test_ppl_disjoint_windows(student, trusted_model, text_ids):
    check(student, trusted_model, "llama", text_ids(100), 24, 24)


def test_ppl_mamba(student, trusted_model, text_ids):
    check(student, trusted_model, "mamba", text_ids(90), 32, 16)


def test_ppl_single_window(student, trusted_model, text_ids):
    ids = text_ids(40)[0]
    check(student, trusted_model, "llama", ids, 64, 39)
