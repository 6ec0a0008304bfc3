"""Everything that runs next to student code: the trust boundary as a folder.

    runner.py       the sandbox's runner: executes the notebook in an ipykernel, then serves the grader's calls
    harness.py      run inside the student's kernel for each call (read as text by the runner, executed in a fresh
                    namespace): decodes the arguments, calls the function, encodes the value; its probes let a
                    check observe a call (the model's forward calls) or time trusted code in the same kernel
    zygote_main.py  the warm-start zygote: a trusted process that imports the kernel's libraries once and forks a
                    sandbox per submission; every warm sandbox starts as a copy of its memory

These files are mounted read-only into the sandbox (at /run/sparkgrade) and are self-contained: they import only the
standard library and what the kernel needs (nbformat, nbclient, jupyter_client, ipykernel; torch, safetensors and
transformers in the kernel). Nothing here may import `autograder` or `reference`: neither is visible inside, and
nothing that decides a grade may run here. What comes back out of the sandbox is untrusted data (see ../codec.py).
"""
