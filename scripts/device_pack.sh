#!/usr/bin/env bash
# Packs what the GPU machine runs: builds, with the cuda preset (portable host code), the CUDA
# test binaries (tests/test_cuda_*), any GPU benchmarks (bench/gpu/), `qkv` and `qkv_bench` (the
# training and translation benchmarks, bench/gpu/*.sh), and puts them
# with the non-system shared libraries they need (OpenBLAS, gfortran, sentencepiece, yaml-cpp,
# gomp, libstdc++, ...) into .device/bundle.tar.xz. Not packed: the C library and loader (the
# machine's own) and the CUDA driver and cuBLAS (the machine's own; the CUDA runtime is linked
# statically). scripts/device_check.sh unpacks and runs it there, scripts/device_bench.sh
# runs the benchmarks (each its own call):
#   run(command="scripts/device_check.sh", carry=[".device"], timeout_s=480)
#   run(command="scripts/device_bench.sh train", carry=[".device"])
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/cuda
jobs=${JOBS:-2}

cmake --preset cuda >/dev/null
targets=(qkv qkv_bench)
for src in tests/test_cuda_*.cpp; do
  # The emulated runtime's self-test is built only where the emulated backend is.
  [ "$src" = tests/test_cuda_emulation.cpp ] || targets+=("$(basename "$src" .cpp)")
done
cmake --build "$build" -j"$jobs" --target "${targets[@]}"
bins=("$build/qkv" "$build/bench/qkv_bench")
for t in "${targets[@]:2}"; do bins+=("$build/tests/$t"); done
if [ -d "$build/bench/gpu" ]; then  # a CMake subdirectory of bench/
  cmake --build "$build" -j"$jobs" --target bench/gpu/all
  while IFS= read -r exe; do bins+=("$exe"); done < <(find "$build/bench/gpu" -maxdepth 1 -type f -executable)
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for b in "${bins[@]}"; do
  cp "$b" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$(basename "$b")"
done
# Every library the binaries load, except those the machine must provide itself.
system='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libcuda\.so|libcublas|libcudart|libnvidia)'
ldd "${bins[@]}" | awk '/=> \//{print $1, $3}' | sort -u | while read -r name path; do
  if [[ ! "$name" =~ $system ]]; then cp -L "$path" "$stage/lib/$name"; fi
done
if ldd "${bins[@]}" | grep -q "not found"; then
  echo "device_pack: a library is missing here:" >&2
  ldd "${bins[@]}" | grep "not found" >&2
  exit 1
fi
# The newest C library version the binaries and libraries ask for (the machine needs it).
glibc=$(objdump -T "$stage"/bin/* "$stage"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)

rm -rf .device
mkdir -p .device
tar -C "$stage" -cJf .device/bundle.tar.xz bin lib
{
  echo "packed $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  echo "needs $glibc or newer, and libcublas.so.13 (CUDA 13)"
  (cd "$stage" && ls -l bin lib)
} >.device/MANIFEST
cat .device/MANIFEST
echo "unpacked: $(du -sh "$stage" | cut -f1); .device/: $(du -sh .device | cut -f1) (the limit is 64 MiB)"
