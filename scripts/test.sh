#!/usr/bin/env bash
# Builds qkv and runs the whole test suite: Release, whose CUDA tests run on the CPU emulation of
# tests/cuda_emulation (qkv_core_emulated); the CUDA sources compiled with nvcc where it is
# installed (no kernel may spill registers); then AddressSanitizer + UBSan (unless QKV_SKIP_ASAN=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Whole builds compile the library and the command in batches of files (CMakeLists.txt,
# QKV_UNITY_BUILD; the presets read it from here): each batch parses the shared headers once.
export QKV_UNITY_BUILD=${QKV_UNITY_BUILD:-ON}
PRESET=release source scripts/setup.sh
ctest --preset release -j "$(nproc)"
# The CUDA tests ran above on the emulation, where a CUDA test fails rather than skip without a
# device (support/cuda_compare.h): none may be missing.
cuda_tests=$(ctest --preset release -N -R '^Cuda')
[[ $cuda_tests =~ "Total Tests: "[1-9] ]] || {
  echo "qkv test: the Release build has no CUDA tests" >&2
  exit 1
}
# Where nvcc is installed (no GPU needed), every CUDA source is compiled for the GPU too: the
# emulation compiles them as C++, which accepts what nvcc may not. Every one, so that ptxas
# reports every kernel's registers and spills (-Xptxas=-v): a kernel that spills fails here.
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$NVCC" ]; then
  cmake --preset cuda -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_FLAGS=-Xptxas=-v >/dev/null
  mapfile -t cuda_objects < <(ninja -C build/cuda -t targets all | grep -E '\.cu\.o:' | cut -d: -f1)
  rm -f "${cuda_objects[@]/#/build/cuda/}"
  ninja -C build/cuda "${cuda_objects[@]}" >build/cuda/ptxas.log 2>&1 || {
    grep -E -A3 'error|FAILED' build/cuda/ptxas.log | head -60
    exit 1
  }
  echo "qkv test: ${#cuda_objects[@]} CUDA sources compiled with $NVCC"
  scripts/cuda_resources.py build/cuda/ptxas.log
else
  echo "qkv test: no nvcc here, the CUDA sources were not compiled for the GPU"
fi
echo "qkv test: Release and nvcc done after ${SECONDS} s"
if [ "${QKV_SKIP_ASAN:-0}" != 1 ]; then
  # The sanitizers take the tests of the library's code: ops, tensors, parsers and converters,
  # data, model directories, decoding and the training loop. Left out here, having run in
  # Release above: test_cli_*, which run whole `qkv` commands over library code those tests
  # already cover; test_cuda_*, which skip here (the Release run on the emulation is theirs); and
  # test_convert_hf_fixtures, which skips without tests/data/hf (made where transformers is);
  # and test_train_data_parallel, whose ranks run under mpirun (Open MPI keeps allocations to
  # the end, which the leak checker would report; one-rank data-parallel code runs in every
  # training test here, and test_gradient_sum).
  asan_left_out='test_(cli_.*|cuda_.*|convert_hf_fixtures|train_data_parallel)'
  mapfile -t asan_targets < <(cd tests && ls test_*.cpp | sed 's/\.cpp$//' | grep -vxE "$asan_left_out")
  PRESET=asan source scripts/setup.sh "${asan_targets[@]}"
  # The tests that replay whole training runs to compare them bit for bit (a resumed run
  # against an unbroken one, ...) run in Release above: they are its longest (about a fifth of
  # its test time), and the shorter training tests take the sanitizers through the same code.
  # The targets not built leave a placeholder test each (<target>_NOT_BUILT), skipped too.
  replays='ResumedRunEqualsUnbrokenRun|KilledRunsResumeFromTheLastCompleteCheckpoint|TranslationAdapterCoversOnlyItsTargets'
  ctest --preset asan -j "$(nproc)" -E "^${asan_left_out}_NOT_BUILT\$|$replays"
  echo "qkv test: AddressSanitizer done after ${SECONDS} s"
fi
