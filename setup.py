"""What pyproject.toml cannot say alone: the course's data folders ride in the wheel.

rubrics/ and assignments/ stay at the top of the repository (a lab is data, added there); a wheel carries them as
the packages ``sparkgrade_rubrics`` and ``sparkgrade_assignments`` (every file in them: rubrics, hidden checks,
lab builders, source notebooks and their data), and autograder.paths finds them in either layout.
Everything else about the package is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

DATA_FOLDERS = {"sparkgrade_rubrics": "rubrics", "sparkgrade_assignments": "assignments"}
CODE = find_namespace_packages(include=["autograder", "autograder.*", "reference", "reference.*"],
                               exclude=["*.__pycache__"])

setup(
    packages=[*CODE, *DATA_FOLDERS],
    package_dir=DATA_FOLDERS,
    package_data={
        # The engine's own data: Jinja templates, the migration template, JSON/YAML tables.
        **{name: ["*.json", "*.yaml", "*.j2", "*.html", "*.txt", "*.mako"] for name in CODE},
        **{name: ["**/*"] for name in DATA_FOLDERS},
    },
    exclude_package_data={name: ["**/__pycache__/*", "**/*.pyc", "**/.ipynb_checkpoints/*"] for name in DATA_FOLDERS},
)
