# Sourced on the GPU machine by scripts/device_check.sh and the GPU benchmarks (bench/gpu/):
#   source scripts/device_env.sh
# Unpacks .device/bundle.tar.xz (scripts/device_pack.sh made it) into $QKV_DEVICE_UNPACK (default
# /tmp/qkv-device.<checksum of the repo path>: outside the repo, so that .device stays small
# enough to carry, and one per checkout), unless this
# bundle is unpacked there already, and puts its libraries and the machine's cuBLAS (the CUDA
# toolkit's, else the one in Python's nvidia wheels: PyTorch's) on LD_LIBRARY_PATH. Sets
# QKV_DEVICE_BIN to the binaries. Returns non-zero when there is nothing to unpack.
qkv_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
qkv_bundle=$qkv_repo/.device/bundle.tar.xz
qkv_unpack=${QKV_DEVICE_UNPACK:-/tmp/qkv-device.$(echo "$qkv_repo" | cksum | cut -d' ' -f1)}
if [ ! -f "$qkv_bundle" ]; then
  echo "device_env: no $qkv_bundle (run scripts/device_pack.sh, carry .device)" >&2
  return 1
fi
qkv_stamp="$(cksum <"$qkv_bundle")"
if [ "$(cat "$qkv_unpack/.bundle" 2>/dev/null)" != "$qkv_stamp" ]; then
  rm -rf "$qkv_unpack"
  mkdir -p "$qkv_unpack"
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
    "$qkv_bundle" "$qkv_unpack" || {
    echo "device_env: cannot unpack $qkv_bundle" >&2
    return 1
  }
  echo "$qkv_stamp" >"$qkv_unpack/.bundle"
fi
qkv_cublas_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda*/targets/*/lib \
  $(python3 -c "import site; print(' '.join(site.getsitepackages()))" 2>/dev/null | tr ' ' '\n' |
    sed -e 's|$|/nvidia/cublas/lib|' -e 'p' -e 's|/nvidia/cublas/lib$|/nvidia/cu13/lib|'); do
  if ls "$d"/libcublas.so.13* >/dev/null 2>&1; then qkv_cublas_dirs="$qkv_cublas_dirs:$d"; fi
done
export LD_LIBRARY_PATH="$qkv_unpack/lib$qkv_cublas_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QKV_DEVICE_BIN="$qkv_unpack/bin"
