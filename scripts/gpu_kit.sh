#!/usr/bin/env bash
# The GPU kit: `vreason gpu-figures` on a lent GPU machine whose image lacks our packages.
#
# The lent machine (one H200, 15 minutes of device time, its start included) runs its own image:
# Python 3.12, torch 2.11, transformers 5.17, none of pydantic, lmms-eval, qwen-vl-utils or decord,
# and no package registry. What travels is the working tree plus up to 8 ignored paths, 64 MiB in all.
# So this kit builds, here, a wheelhouse of exactly what the image lacks for the figures (cp312,
# manylinux x86_64, at most 48 MiB; it is gitignored and travels as a `carry` path), and the one
# command to run there: a venv with --system-site-packages over the image's torch, an install with
# --no-index from the wheelhouse, then `vreason gpu-figures --compile` under an 8-minute limit, its
# JSON and Markdown written to $OUT.
#
# Left out: the end-to-end lmms-eval run (gpu-figures --skip-e2e). It needs lmms-eval 0.7.3
# (4.0 MiB) and the dozens of its dependencies the image lacks, decord (13.0 MiB) and PyAV
# (38.1 MiB): more than the 48 MiB the wheelhouse may take.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${GPU_KIT_DIR:-$ROOT/.gpu-kit}      # inside the repository: the wheelhouse must travel with the tree
WHEELHOUSE=$KIT/wheelhouse
CARRY=${WHEELHOUSE#"$ROOT"/}
LIMIT_MIB=48
DEV_PYTHON=${DEV_PYTHON:-$ROOT/.venv/bin/python}   # the environment whose versions the wheelhouse pins
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python}
GPU_FIGURES_ARGS=${GPU_FIGURES_ARGS:-}
FIGURES_LIMIT_S=480

# What the image lacks: transformers (ours needs >= 5.24, the image has 5.17) and pydantic with its
# own dependencies. The image's huggingface-hub 1.33, tokenizers 0.23.2 and safetensors 0.8 already
# satisfy transformers 5.24; regex and typing-extensions travel in case the image's are older than
# transformers' and pydantic's lower bounds (pip takes them only then).
DIRECT=(transformers pydantic)
CANDIDATES=(pydantic-core annotated-types typing-inspection typing-extensions regex)
PLATFORM_ARGS=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp --abi cp312
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# The rehearsal's stand-in for the image: its listed versions (the device README's KINDS.md).
IMAGE_TORCH=(torch==2.11.0 torchvision==0.26.0)
IMAGE_PACKAGES=(transformers==5.17.0 huggingface-hub==1.33.0 tokenizers==0.23.2 safetensors==0.8.0
  accelerate==1.15.0 numpy==2.5.2 psutil pyyaml tqdm packaging filelock fsspec jinja2 pillow typer
  sympy networkx mpmath setuptools scipy)
IMAGE_LACKS=(pydantic pydantic-core annotated-types typing-inspection)

usage() {
  cat <<EOF
usage: scripts/gpu_kit.sh [--build | --on-device | --rehearse | --dry-run | --help]

Builds and runs the GPU kit: \`vreason gpu-figures --compile\` on a lent GPU machine (the device tool),
whose image has torch but lacks pydantic, lmms-eval and a recent transformers, and reaches no registry.

  --build       (default) build the wheelhouse here in ${WHEELHOUSE#"$ROOT"/} (cp312, manylinux x86_64,
                at most $LIMIT_MIB MiB; needs the package registry), print its contents and size, and
                the one command to run on the device machine
  --on-device   what runs there: a venv with --system-site-packages over the image's python3, an
                install from the wheelhouse only (--no-index), then gpu-figures under ${FIGURES_LIMIT_S}s,
                JSON + Markdown + log in \$OUT
  --rehearse    prove the kit here: build the wheelhouse, a Python 3.12 stand-in for the image (torch
                2.11 and the image's versions) and run --on-device over it with
                GPU_FIGURES_ARGS="--small --device cpu"; prints the timings
  --dry-run     print the commands of --build and --on-device, run nothing
  --help        this text

Environment: GPU_FIGURES_ARGS (extra gpu-figures arguments, e.g. "--repeats 3"), GPU_KIT_DIR (default
.gpu-kit), DEV_PYTHON (whose package versions are pinned; default .venv/bin/python), PY312 (the
rehearsal's Python 3.12), PYTHON3 and OUT (on the device: the image's python3 and the output folder).

Left out: the end-to-end lmms-eval run (--skip-e2e): lmms-eval 0.7.3 and its dependencies, decord
(13.0 MiB) and PyAV (38.1 MiB) do not fit a $LIMIT_MIB MiB wheelhouse.
EOF
}

DRY=0
run() {  # print a command as `+ cmd`; run it unless this is a dry run
  printf '+ %s\n' "$(printf '%q ' "$@" | sed 's/ $//')"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

note() { printf '%s\n' "$*"; }

# A clean pip for the install: no pip configuration (extra indexes, find-links, constraints) of the
# machine it runs on, so the wheelhouse and the image are all it can use.
PIP_CLEAN=(env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL
  PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1)

pinned() {  # NAME==VERSION as installed in DEV_PYTHON (NAME alone when it cannot tell)
  local name=$1 version=""
  if [ -x "$DEV_PYTHON" ]; then
    version=$("$DEV_PYTHON" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null || true)
  fi
  if [ -n "$version" ]; then printf '%s==%s' "$name" "$version"; else printf '%s' "$name"; fi
}

build() {
  local specs=() name
  for name in "${DIRECT[@]}" "${CANDIDATES[@]}"; do specs+=("$(pinned "$name")"); done
  run rm -rf "$WHEELHOUSE"
  run mkdir -p "$WHEELHOUSE"
  run "$DEV_PYTHON" -m pip download -q "${PLATFORM_ARGS[@]}" -d "$WHEELHOUSE" "${specs[@]}"
  # lmms-vreason itself, installed there with --no-deps: its other dependencies are the e2e run's.
  run "$DEV_PYTHON" -m pip wheel -q --no-deps -w "$WHEELHOUSE" "$ROOT"
  local direct=()
  for name in "${DIRECT[@]}"; do direct+=("$(pinned "$name")"); done
  note "+ printf '%s\\n' ${direct[*]} > ${WHEELHOUSE#"$ROOT"/}/requirements.txt"
  [ "$DRY" = 1 ] && return 0
  printf '%s\n' "${direct[@]}" >"$WHEELHOUSE/requirements.txt"
  rm -rf "$ROOT/build"
  local bytes
  bytes=$(du -cb "$WHEELHOUSE"/*.whl | tail -1 | cut -f1)
  note ""
  note "wheelhouse ${WHEELHOUSE#"$ROOT"/}: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels, $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"
  (cd "$WHEELHOUSE" && ls -l -- *.whl | awk '{ printf "  %10d  %s\n", $5, $9 }')
  if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "error: the wheelhouse is over $LIMIT_MIB MiB; it would not travel with the tree" >&2
    exit 1
  fi
}

print_device_command() {
  note ""
  note "On the device machine (the device tool's run; the tree travels, the wheelhouse is carried):"
  note "  run(command=\"bash scripts/gpu_kit.sh --on-device\", carry=[\"$CARRY\"], timeout_s=600)"
  note "  extra gpu-figures arguments: command=\"GPU_FIGURES_ARGS='--repeats 3' bash scripts/gpu_kit.sh --on-device\""
  note "Left out: the end-to-end lmms-eval run (--skip-e2e): lmms-eval, decord and PyAV do not fit $LIMIT_MIB MiB."
}

on_device() {
  local python3=${PYTHON3:-python3} venv=${VENV:-/tmp/vreason-venv} out=${OUT:?OUT: where the figures go}
  local started=$SECONDS step=$SECONDS
  [ "$DRY" = 1 ] || [ -f "$WHEELHOUSE/requirements.txt" ] || {
    echo "error: no wheelhouse at $WHEELHOUSE: build it here first (scripts/gpu_kit.sh --build) and carry it" >&2
    exit 1
  }
  run rm -rf "$venv"
  run "$python3" -m venv --system-site-packages "$venv"
  # When the image's python3 is itself a venv (/opt/torch/.venv), --system-site-packages reaches the
  # base interpreter's site-packages, not the image venv's where torch lives: add those by a .pth.
  local purelib="" image_sites=""
  if [ "$DRY" = 0 ]; then
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    image_sites=$("$python3" -c 'import site, sys; print("\n".join(site.getsitepackages()) if sys.prefix != sys.base_prefix else "")')
    if [ -n "$image_sites" ]; then printf '%s\n' "$image_sites" >"$purelib/_vreason_image_site.pth"; fi
  fi
  note "+ (if $python3 is a venv) its site-packages > VENV_SITE_PACKAGES/_vreason_image_site.pth"
  local venv_s=$((SECONDS - step)) && step=$SECONDS
  run "${PIP_CLEAN[@]}" "$venv/bin/python" -m pip install -q --no-index --no-cache-dir --no-compile \
    --find-links "$WHEELHOUSE" -r "$WHEELHOUSE/requirements.txt"
  if [ "$DRY" = 1 ]; then
    run "${PIP_CLEAN[@]}" "$venv/bin/python" -m pip install -q --no-index --no-deps --no-cache-dir --no-compile "$WHEELHOUSE/lmms_vreason-*.whl"
  else
    run "${PIP_CLEAN[@]}" "$venv/bin/python" -m pip install -q --no-index --no-deps --no-cache-dir --no-compile "$WHEELHOUSE"/lmms_vreason-*.whl
  fi
  local install_s=$((SECONDS - step)) && step=$SECONDS
  local args=(--skip-e2e --out "$out")
  if [ "$DRY" = 1 ] || "$venv/bin/python" -m lmms_vreason.cli gpu-figures --help | grep -q -- '--compile'; then
    args=(--compile "${args[@]}")
  else
    note "note: this tree's gpu-figures has no --compile yet; running without it"
  fi
  # shellcheck disable=SC2206  # GPU_FIGURES_ARGS is a list of words by design
  local extra=($GPU_FIGURES_ARGS)
  note "Left out: the end-to-end lmms-eval run (--skip-e2e): lmms-eval, decord and PyAV do not fit $LIMIT_MIB MiB."
  run mkdir -p "$out"
  local status=0
  printf '+ %s\n' "HF_HUB_OFFLINE=1 timeout $FIGURES_LIMIT_S $venv/bin/python -m lmms_vreason.cli gpu-figures ${args[*]} ${extra[*]} 2>&1 | tee $out/gpu-figures.log"
  if [ "$DRY" = 0 ]; then
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 timeout "$FIGURES_LIMIT_S" \
      "$venv/bin/python" -m lmms_vreason.cli gpu-figures "${args[@]}" "${extra[@]}" 2>&1 |
      tee "$out/gpu-figures.log" || status=$?
    local versions
    versions=$("$venv/bin/python" -c 'import torch, transformers, pydantic, lmms_vreason, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__} ({torch.__file__}), transformers {transformers.__version__}, pydantic {pydantic.__version__}, lmms_vreason {lmms_vreason.__file__}")')
    note "kit: venv ${venv_s}s, install ${install_s}s, gpu-figures $((SECONDS - step))s (exit $status), total $((SECONDS - started))s"
    note "kit: $versions"
    [ "$status" = 124 ] && echo "error: gpu-figures ran past ${FIGURES_LIMIT_S}s (pass fewer repeats with GPU_FIGURES_ARGS)" >&2
  fi
  return "$status"
}

rehearse() {
  local image=$KIT/image started=$SECONDS step
  [ -x "$PY312" ] || { echo "error: no Python 3.12 at $PY312 (set PY312)" >&2; exit 1; }
  step=$SECONDS
  build
  local build_s=$((SECONDS - step)) && step=$SECONDS
  if [ ! -x "$image/bin/python" ]; then  # the stand-in for the image, kept between rehearsals
    run "$PY312" -m venv "$image"
    # torch's CUDA build with its CUDA libraries (about 3 GB, once): it imports and runs on the CPU.
    run "$image/bin/python" -m pip install -q "${IMAGE_TORCH[@]}" "${IMAGE_PACKAGES[@]}"
    # what pip pulled in that the image does not have (newer typer needs pydantic)
    run "$image/bin/python" -m pip uninstall -q -y "${IMAGE_LACKS[@]}"
  fi
  local image_s=$((SECONDS - step)) && step=$SECONDS
  PYTHON3=$image/bin/python VENV=$KIT/rehearsal-venv OUT=${OUT:-$KIT/rehearsal-out} \
    GPU_FIGURES_ARGS=${GPU_FIGURES_ARGS:-"--small --device cpu"} on_device
  note "rehearsal: wheelhouse ${build_s}s, stand-in image ${image_s}s, device command $((SECONDS - step))s, total $((SECONDS - started))s"
}

mode=build
case "${1:-}" in
  "" | --build) mode=build ;;
  --on-device) mode=on_device ;;
  --rehearse) mode=rehearse ;;
  --dry-run) mode=dry ;;
  -h | --help) usage; exit 0 ;;
  *) echo "error: unknown argument ${1}; valid: --build, --on-device, --rehearse, --dry-run, --help" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "error: one argument at most; valid: --build, --on-device, --rehearse, --dry-run, --help" >&2; exit 2; }

case $mode in
  build) build; print_device_command ;;
  on_device) on_device ;;
  rehearse) rehearse ;;
  dry)
    DRY=1
    note "# --build (here):"
    build
    print_device_command
    note "# --on-device (there):"
    OUT=${OUT:-'$OUT'} on_device
    ;;
esac
