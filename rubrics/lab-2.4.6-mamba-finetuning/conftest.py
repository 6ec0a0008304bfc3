"""The lab's tiny models loaded in this trusted process, and text to score.

The models folder on the trusted side is named by $SPARKGRADE_MODELS_TRUSTED (the grader sets it to the same folder
the sandbox loads ``Model(name)`` from). Without it the checks that need a model fail as a grader error."""

from __future__ import annotations






