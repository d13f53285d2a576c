#!/usr/bin/env bash
# Create a separate virtual environment holding the real Topaz (topaz-em 0.3.20), so that
# benchmarks/topaz/runner.py can run it side by side with picker_gui.
#
# Usage: benchmarks/topaz/setup_topaz.sh [VENV_DIR]
#   VENV_DIR defaults to .venv-topaz at the repository root. Override the interpreter used to
#   create it with PYTHON=/path/to/python3 (topaz-em 0.3.20 declares Python >=3.8,<=3.13).
#
# Idempotent: every step checks before it acts, and a stamp file records the pinned set that was
# installed; a second run with the same pins skips pip and only re-checks the torchvision patch
# and the imports (about 12 s, mostly importing torch).
#
# Findings behind the choices below (topaz-em 0.3.20, checked on Python 3.11, 2 CPU cores):
# * torch is pinned to 2.13.0, the CPU build found through pip's configured find-links. An
#   unpinned torch would resolve to the newest CUDA build and download gigabytes.
# * topaz-em's metadata requires torch, torchvision, tqdm, h5py, numpy, pandas, psutil,
#   scikit-learn, scipy, pillow and future. It is installed with --no-deps so that pip cannot
#   replace the pinned torch. Nothing else is imported by train/extract/preprocess (checked by
#   grepping its imports); pkg_resources is only a fallback used when importlib.resources fails.
# * torchvision is really used (rotate/hflip/vflip in the training crop augmentation,
#   topaz/utils/data/memory_mapped_data.py). Only CUDA-built wheels exist; 0.28.0 (the one
#   matching torch 2.13) is installed with --no-deps and its _meta_registrations.py is patched,
#   see patch_torchvision below.
# * numpy 2.x does NOT break topaz 0.3.20, so numpy is not pinned below 2. Its sources use no
#   removed alias (np.float, np.int, np.bool, np.object, np.float_, np.NaN, np.product,
#   np.in1d, ...: none found). The one numpy-2-sensitive idiom, np.array(x, copy=False) in
#   topaz/utils/data/loader.py and sampler.py, does not raise: x is already an ndarray for MRC
#   input, and a PIL TIFF converts without a copy too. Verified with numpy 2.4.6: train (with a
#   test set), extract and preprocess (GMM normalisation, MRC/TIFF/PNG output) run to completion.
# * pandas 3.x: the read_csv(sep='\s+') calls, DataFrame.sample, merge(how='cross'), groupby
#   and column assignments Topaz uses all work (same runs, pandas 3.1.1). scipy 1.17
#   (stats.binom.logpmf in GE-binomial) and scikit-learn 1.9 (KDTree) likewise.
# * Unrelated to numpy: topaz 0.3.20's load_png/load_jpeg return the PIL image instead of the
#   unquantised array, so PNG/JPEG inputs are broken; feed Topaz MRC files.
# constraints.txt (next to this script) pins every dependency to the versions verified above, so
# the environment is the same on each machine; the result is frozen to $VENV_DIR/topaz-freeze.txt.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
VENV_DIR="${1:-$REPO_ROOT/.venv-topaz}"
PYTHON="${PYTHON:-python3}"

TORCH_SPEC="torch==2.13.0"
TOPAZ_SPEC="topaz-em==0.3.20"
TORCHVISION_SPEC="torchvision==0.28.0"
# Topaz's own requirements other than torch/torchvision (from its wheel METADATA), with the
# lower bounds it declares.
TOPAZ_DEPS=("tqdm>=4.65.0" "h5py>=3.7.0" "numpy>=1.11" "pandas>=0.20.3" "psutil>=5.8.0"
            "scikit-learn>=0.19.0" "scipy>=0.17.0" "pillow>=6.2.0" "future")
CONSTRAINTS="$SCRIPT_DIR/constraints.txt"
STAMP_CONTENT="$TORCH_SPEC $TOPAZ_SPEC $TORCHVISION_SPEC ${TOPAZ_DEPS[*]} $(cksum < "$CONSTRAINTS")"

log() { printf '[setup_topaz] %s\n' "$*" >&2; }

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    log "creating virtual environment $VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR"
fi
VPY="$VENV_DIR/bin/python"
STAMP="$VENV_DIR/.topaz-setup-stamp"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    log "pinned packages already installed (stamp $STAMP); skipping pip"
else
    pip_install() { "$VPY" -m pip install --disable-pip-version-check --quiet -c "$CONSTRAINTS" "$@"; }
    log "installing $TORCH_SPEC (CPU build via pip's find-links)"
    pip_install "$TORCH_SPEC"
    log "installing Topaz's pure-Python requirements"
    pip_install "${TOPAZ_DEPS[@]}"
    log "installing $TOPAZ_SPEC and $TORCHVISION_SPEC without dependencies"
    pip_install --no-deps "$TOPAZ_SPEC" "$TORCHVISION_SPEC"
    # Fail loudly if anything above moved torch off the pinned build.
    "$VPY" - "$TORCH_SPEC" <<'EOF'
import sys
from importlib.metadata import version
want = sys.argv[1].split("==")[1]
have = version("torch")
if have.split("+")[0] != want:
    sys.exit(f"torch {have} installed, expected {want}: refusing to continue")
EOF
    "$VPY" -m pip freeze --disable-pip-version-check > "$VENV_DIR/topaz-freeze.txt"
    printf '%s' "$STAMP_CONTENT" > "$STAMP"
fi

# patch_torchvision: torchvision 0.28.0's _meta_registrations.py registers fake (meta) kernels
# for torchvision::nms and torchvision::qnms with a bare @torch.library.register_fake(...), while
# every other op goes through register_meta(), which first checks extension._has_ops(). When the
# compiled ops cannot load (CUDA-built wheel on a CPU-only torch) `import torchvision` dies with
# "RuntimeError: operator torchvision::nms does not exist". We route those two decorators through
# the same _has_ops() guard. Topaz only uses rotate/hflip/vflip, which are pure torch.
# The edit is anchored on the decorator text (not line numbers), marked, and skipped when present.
log "checking torchvision's _meta_registrations.py"
"$VPY" - <<'EOF'
import importlib.util
import pathlib
import re
import sys

MARKER = "# picker_gui benchmarks/topaz: guard fake registrations with _has_ops()"
HELPER = f'''{MARKER}
def _register_fake_if_ops(op_name):
    def wrapper(fn):
        if torchvision.extension._has_ops():
            return torch.library.register_fake(op_name)(fn)
        return fn

    return wrapper


'''
spec = importlib.util.find_spec("torchvision")
if spec is None or not spec.submodule_search_locations:
    sys.exit("torchvision is not installed in this environment")
path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"
text = path.read_text()
if MARKER in text:
    print(f"[setup_topaz] already patched: {path}", file=sys.stderr)
    sys.exit(0)
pattern = re.compile(r'^@torch\.library\.register_fake\((["\'])(torchvision::\w+)\1\)', re.M)
matches = list(pattern.finditer(text))
if not matches:
    # A torchvision without the unguarded decorators needs no patch; the import check below
    # still decides whether it works.
    print(f"[setup_topaz] no unguarded register_fake in {path}; not patching", file=sys.stderr)
    sys.exit(0)
ops = [m.group(2) for m in matches]
text = pattern.sub(lambda m: f'@_register_fake_if_ops("{m.group(2)}")', text)
first = text.index("@_register_fake_if_ops(")
text = text[:first] + HELPER + text[first:]
path.write_text(text)
print(f"[setup_topaz] patched {path}: guarded {', '.join(ops)}", file=sys.stderr)
EOF

log "checking that Topaz imports and runs"
"$VPY" -c "import topaz, torchvision; from topaz.commands import train, extract; print('topaz', topaz.__version__, '| torchvision', torchvision.__version__)"
"$VENV_DIR/bin/topaz" --help > /dev/null
log "ready: $VENV_DIR/bin/topaz"
