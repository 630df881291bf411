// bf16 of the emulated backend: __nv_bfloat16 is declared by ../cuda_emulation.h.
#pragma once
#include "cuda_runtime.h"
