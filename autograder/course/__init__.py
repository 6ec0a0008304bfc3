"""The course side, nbgrader's world: creating a course (create.py), mirroring grades into nbgrader's gradebook
(gradebook.py), exporting grades (export.py) and the demo class (demo.py)."""
