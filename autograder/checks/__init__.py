"""Hidden checks: ordinary pytest tests in rubrics/<lab>/, run in the trusted process against the sandbox.

`api` is what a check author uses (comparisons, misconceptions, errors); `plugin` provides the fixtures
(`student`, `rng`, `rubric`, `submission`); `runner` runs one lab's checks for one submission.
"""
