"""nbgrader course configuration of the Efficient Architectures module (six labs).

The lab id is the nbgrader assignment id and the notebook name: source/<lab-id>/<lab-id>.ipynb. Notebooks run on
the python3 kernel of the course environment. The solution stub names what is missing, so a released notebook run
as-is fails with a readable NotImplementedError instead of a bare one.
"""

c = get_config()  # noqa: F821  (injected by nbgrader/traitlets when this file is loaded)

c.CourseDirectory.course_id = "efficient-architectures"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

LABS = [
    ("lab-2.4.1-mamba-inference", "Mamba inference: KV cache vs SSM state, generation benchmarks"),
    ("lab-2.4.2-mamba-architecture", "The selective scan, its discretisation, the hardware-aware scan, Mamba-2"),
    ("lab-2.4.3-moe-exploration", "Mixture-of-Experts: sparse activation and expert specialisation"),
    ("lab-2.4.4-moe-router", "Routers: top-k, load balancing, capacity and z-loss"),
    ("lab-2.4.5-architecture-comparison", "Mamba vs Transformer vs MoE (and hybrids): quality, speed, memory"),
    ("lab-2.4.6-mamba-finetuning", "Fine-tuning Mamba with LoRA"),
]
# (nbgrader 0.9 adds an assignment to the gradebook when it is first generated: `nbgrader generate_assignment ID`.)

# Every notebook runs on the course environment's python3 kernel.
c.ExecutePreprocessor.kernel_name = "python3"
c.Execute.timeout = 600  # per cell; the spark profile's long-context benchmarks need minutes
c.Execute.interrupt_on_timeout = True

STUB = 'raise NotImplementedError("not implemented yet: write this function, then run its tests")'
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n" + STUB}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
