// f16 of the emulated backend: __half is declared by ../cuda_emulation.h.
#pragma once
#include "cuda_runtime.h"
