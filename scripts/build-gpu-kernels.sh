#!/usr/bin/env bash
# `make gpu`: builds causal-conv1d and mamba-ssm, the GPU reference kernels, from source for this machine's GPU.
#
# Why from source: their PyPI wheels are x86-64 only and there are none for sm_121 (the DGX Spark's GB10), and their
# setup.py would otherwise download a prebuilt .so that may not fit this torch (mamba-ssm 2.3.1 broke ABI with
# torch >= 2.10). Why --no-build-isolation: mamba-ssm leaves torch out of its build requirements, and causal-conv1d's
# isolated build pulls a fresh CPU torch; both must compile against the CUDA torch already in the venv.
# It fails loudly with the real import error: on a machine with CUDA a reference kernel that does not import is an
# error, never a silent fallback to the CPU reference.
set -euo pipefail
PY="${PY:-.venv/bin/python}"
MAMBA_SSM_VERSION="${MAMBA_SSM_VERSION:?set by the Makefile}"
CAUSAL_CONV1D_VERSION="${CAUSAL_CONV1D_VERSION:?set by the Makefile}"

die() { echo "make gpu: $*" >&2; exit 1; }

# The torch in the venv must be a CUDA build that sees a GPU: the architecture is read from the GPU itself.
arch=$("$PY" - <<'PY'
import sys
import torch
if torch.version.cuda is None:
    sys.exit(f"torch {torch.__version__} is a CPU build: install the CUDA build first (README, 'On the GPU box')")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: check nvidia-smi and the driver")
major, minor = torch.cuda.get_device_capability(0)
print(f"{major}.{minor}")
PY
) || die "no CUDA torch (above)"

CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
[ -x "$CUDA_HOME/bin/nvcc" ] || die "nvcc not found at $CUDA_HOME/bin/nvcc: install the CUDA toolkit or set CUDA_HOME"
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}"
export MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE
# Triton's bundled ptxas does not know sm_121 (triton#8539, #9181): use the toolkit's.
export TRITON_PTXAS_PATH="${TRITON_PTXAS_PATH:-$CUDA_HOME/bin/ptxas}"
# nvcc is memory hungry: one job per 8 GB keeps a 128 GB Spark (or a small box) from swapping.
export MAX_JOBS="${MAX_JOBS:-$(awk '/MemTotal/ {j = int($2 / 8388608); print (j < 1 ? 1 : (j > 16 ? 16 : j))}' /proc/meminfo)}"

echo "make gpu: building causal-conv1d $CAUSAL_CONV1D_VERSION and mamba-ssm $MAMBA_SSM_VERSION for sm_${arch/./}" \
     "(TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, $("$CUDA_HOME/bin/nvcc" --version | tail -1), MAX_JOBS=$MAX_JOBS)"
"$PY" -m pip install --disable-pip-version-check ninja packaging einops wheel setuptools
"$PY" -m pip install --disable-pip-version-check --no-build-isolation --no-deps --no-cache-dir \
    --no-binary causal-conv1d,mamba-ssm \
    "causal-conv1d==$CAUSAL_CONV1D_VERSION" "mamba-ssm==$MAMBA_SSM_VERSION"

# The proof: the compiled modules import and a kernel runs. Any failure prints Python's own traceback.
"$PY" - <<'PY' || die "the kernels were built but do not load (the traceback above is the real error)"
import torch
import causal_conv1d, mamba_ssm
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
from mamba_ssm.ops.triton.selective_state_update import selective_state_update  # noqa: F401 (compiles on first use)
u = torch.randn(1, 4, 8, device="cuda")
out = selective_scan_fn(u, u.abs(), -torch.rand(4, 2, device="cuda"), torch.randn(1, 2, 8, device="cuda"),
                        torch.randn(1, 2, 8, device="cuda"))
torch.cuda.synchronize()
print(f"make gpu: mamba-ssm {mamba_ssm.__version__} and causal-conv1d {causal_conv1d.__version__} load and run "
      f"on {torch.cuda.get_device_name(0)} (output {tuple(out.shape)})")
PY
