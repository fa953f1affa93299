#!/usr/bin/env bash
# Install everything the benchmark needs on a fresh Debian/Ubuntu machine (idempotent).
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh test     # runtime + test extras (what CI runs)
# Environment: TORCH_SPEC (default "torch==2.13.0"; set e.g. "torch" for your GPU build),
#              SKIP_APT=1 to skip the system package step.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"

# 1. System packages: the FluidSynth library (renders the built-in dataset) and opus-tools
#    (`opusenc`: the exact constant-bitrate encoder of the `opus` codec, docs/codecs.md).
apt_packages=""
ldconfig -p 2>/dev/null | grep -q libfluidsynth || apt_packages="libfluidsynth3"
command -v opusenc >/dev/null || apt_packages="$apt_packages opus-tools"
if [ "${SKIP_APT:-0}" != "1" ] && [ -n "${apt_packages// /}" ]; then
  SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $apt_packages >/dev/null
  else
    echo "install.sh: please install:$apt_packages (brew install fluid-synth opus-tools)" >&2
  fi
fi

# 2. PyTorch first (a CPU build where there is no GPU), so nothing pulls a different one.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi

# 3. The package (editable) with the requested extras.
if [ -n "$extras" ]; then
  "$PY" -m pip install -q -e ".[${extras}]"
else
  "$PY" -m pip install -q -e ".[metrics]"
fi

# 4. Weight/code packages whose declared dependencies must NOT be followed (they pin numpy<1.17,
#    TensorFlow 1, old torch): musicnn ships the FAD backbone weights; music2latent is the official
#    package, used only by the parity test and the converter (CC BY-NC, never imported at run time);
#    laion_clap (CC0; declares numpy<2, torchvision, transformers, wandb, ...) and torchlibrosa are
#    the reference of the CLAP parity test only (our CLAP backbone needs neither).
"$PY" -m pip install -q --no-deps "musicnn==0.1.0"
if [ "$extras" = "test" ]; then
  "$PY" -m pip install -q --no-deps "music2latent==0.1.8"
  # The packages behind the external `snac` (MIT) and `encodec` (0.1.1, CC BY-NC 4.0) codecs,
  # which load released weights from local files. encodec declares torchaudio, which must not be
  # followed (CUDA builds; the codec imports encodec without it); snac's huggingface-hub is
  # download-only. einops is what both import.
  "$PY" -m pip install -q --no-deps "snac==1.2.1" "encodec==0.1.1" "einops>=0.6"
  "$PY" -m pip install -q --no-deps "laion_clap==1.1.7" "torchlibrosa==0.1.0"
  # References of the `dac` and `stable_audio_vae` parity tests (our implementations need neither
  # package), and the package behind the thin `codicodec` adapter (CC BY-NC 4.0). Their declared
  # dependencies must not be followed (torchaudio, tensorboard, pinned torch 2.7.1, lightning,
  # gradio, ...): the small pure-Python modules they import are listed instead; the tests stand
  # placeholders in for torchaudio and pytorch_lightning while importing them. stable-audio-tools
  # declares Python < 3.11, hence --ignore-requires-python on its line only.
  "$PY" -m pip install -q --no-deps "descript-audio-codec==1.0.0" "descript-audiotools==0.7.2" \
    "argbind==0.3.9" "docstring_parser==0.18.0" "julius==0.2.8" "pyloudnorm==0.2.0" "flatten-dict==0.5.0" \
    "ffmpy==1.0.0" "randomname==0.2.1" "markdown2==2.5.6" "rich==15.0.0" "markdown-it-py==4.3.0" "mdurl==0.1.2" \
    "alias-free-torch==0.0.6" "PyWavelets==1.9.0" "safetensors==0.8.0" "torchsde==0.2.6" "trampoline==0.1.2" \
    "einops-exts==0.0.4" "six>=1.16" "codicodec==0.1.2"
  "$PY" -m pip install -q --no-deps --ignore-requires-python "stable-audio-tools==0.0.20"
  # laion_clap's wheel also ships a top-level package named `tests` (its own dev scripts), which
  # would shadow this repository's `tests` package outside the repo root: remove that one.
  "$PY" - <<'PYEOF'
import pathlib, shutil, site
for root in site.getsitepackages():
    stray = pathlib.Path(root) / "tests"
    if (stray / "check_ckpt.py").exists() and (stray / "check_tars.py").exists():
        shutil.rmtree(stray)
PYEOF
  "$PY" -m pip install -q "huggingface_hub>=0.20"
  # Headless Chromium and its driver for the browser test of the HTML report (tests/test_report_html.py
  # skips, saying so, without them). Debian's packages; selenium drives them (test extras).
  if [ "${SKIP_APT:-0}" != "1" ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
    SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
    if command -v apt-get >/dev/null; then
      { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
        echo "install.sh: could not install chromium + chromium-driver; the browser test will be skipped" >&2
    else
      echo "install.sh: no apt-get; install Chromium and chromedriver to run the browser test (skipped otherwise)" >&2
    fi
  fi
fi
echo "install.sh: done"
