"""Intake: the first steps a submission takes, all on untrusted bytes and all in the grader.

    submission.py  read the submitted folder (no links followed, sizes capped) into a Submission
    notebook.py    parse and validate the notebook, restore locked cells from the source, flag tampering
    cells.py       choose the cells the sandbox runs (all, or the definitions the hidden checks need)
"""
