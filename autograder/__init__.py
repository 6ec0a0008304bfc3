"""sparkgrade: the trusted grading engine."""
