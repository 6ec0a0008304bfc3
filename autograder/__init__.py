"""sparkgrade: the trusted grading engine."""

import sys as _sys

# Every grader process reads notebooks with nbformat, which imports jsonschema, whose optional IRI format checker
# (rfc3987_syntax) builds a grammar at import: 2 CPU-seconds per process for a check no notebook schema uses.
# jsonschema imports it under suppress(ImportError); a None entry makes that import fail fast.
_sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
