# Sourced by the bench/gpu scripts: finds the GPU binaries and their libraries. On the device
# machine they come packed in .device/bundle.tar.xz (scripts/device_pack.sh), unpacked here into
# a temporary folder; elsewhere they are in build/cuda. Sets gpu_bin (the folder of binaries)
# and LD_LIBRARY_PATH (the bundle's libraries and the machine's cuBLAS 13: the CUDA toolkit's,
# else the one in PyTorch's nvidia wheels).
if [[ -f .device/bundle.tar.xz ]]; then
  gpu_work=$(mktemp -d)
  trap 'rm -rf "$gpu_work"' EXIT
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
    .device/bundle.tar.xz "$gpu_work"
  gpu_bin=$gpu_work/bin
  LD_LIBRARY_PATH="$gpu_work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  gpu_bin=build/cuda/bench/gpu
fi
cublas_candidates=()
for site in $(python3 -c "import site; print(' '.join(site.getsitepackages()))" 2>/dev/null); do
  cublas_candidates+=("$site/nvidia/cublas/lib" "$site/nvidia/cu13/lib")
done
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 "${cublas_candidates[@]}"; do
  if ls "$d"/libcublas.so.13* > /dev/null 2>&1; then LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"; fi
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
