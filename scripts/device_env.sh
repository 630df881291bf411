# Sourced on the GPU machine by scripts/device_check.sh and the GPU benchmarks (bench/gpu/):
#   source scripts/device_env.sh
# Unpacks .device/bundle.tar.xz (scripts/device_pack.sh made it) into .device/bin and
# .device/lib, unless that was done for this bundle already, and puts those libraries and the
# machine's cuBLAS (the CUDA toolkit's, else the one in Python's nvidia wheels: PyTorch's) on
# LD_LIBRARY_PATH. Sets QKV_DEVICE_BIN. Returns non-zero when there is nothing to unpack.
qkv_device_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.device
if [ ! -f "$qkv_device_dir/bundle.tar.xz" ]; then
  echo "device_env: no $qkv_device_dir/bundle.tar.xz (run scripts/device_pack.sh, carry .device)" >&2
  return 1
fi
if [ ! -f "$qkv_device_dir/.unpacked" ] || [ "$qkv_device_dir/bundle.tar.xz" -nt "$qkv_device_dir/.unpacked" ]; then
  rm -rf "$qkv_device_dir/bin" "$qkv_device_dir/lib"
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
    "$qkv_device_dir/bundle.tar.xz" "$qkv_device_dir" || {
    echo "device_env: cannot unpack $qkv_device_dir/bundle.tar.xz" >&2
    return 1
  }
  touch "$qkv_device_dir/.unpacked"
fi
qkv_cublas_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda*/targets/*/lib \
  $(python3 -c "import site; print(' '.join(site.getsitepackages()))" 2>/dev/null | tr ' ' '\n' |
    sed -e 's|$|/nvidia/cublas/lib|' -e 'p' -e 's|/nvidia/cublas/lib$|/nvidia/cu13/lib|'); do
  if ls "$d"/libcublas.so.13* >/dev/null 2>&1; then qkv_cublas_dirs="$qkv_cublas_dirs:$d"; fi
done
export LD_LIBRARY_PATH="$qkv_device_dir/lib$qkv_cublas_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QKV_DEVICE_BIN="$qkv_device_dir/bin"
