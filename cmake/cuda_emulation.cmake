# The CUDA sources rewritten for tests/cuda_emulation, which runs qkv's kernels on the CPU: each
# launch `k<<<grid, block, smem, stream>>>(args)` becomes a call of cuda_emulation::launch, each
# `extern __shared__ T name[]` the block's dynamic shared memory. A launch names one kernel: a
# template's arguments are written out (its address is taken, for the shared memory limit).
# Done at configure time (an edit of a CUDA source re-runs it); the rewritten files keep the
# original's line numbers.
#
# qkv_translate_cuda(OUT_DIR SOURCES_VAR): writes OUT_DIR/<path under src> for every src/*.cu
# (as .cpp) and src/*.cuh, and sets SOURCES_VAR to the .cpp files.
set(QKV_CUDA_EMULATION_DIR ${PROJECT_SOURCE_DIR}/tests/cuda_emulation)

function(qkv_translate_cuda out_dir sources_var)
  file(GLOB_RECURSE cuda_files RELATIVE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/src/*.cu
       ${PROJECT_SOURCE_DIR}/src/*.cuh)
  set(sources)
  foreach(rel ${cuda_files})
    set(path ${PROJECT_SOURCE_DIR}/src/${rel})
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${path})
    file(READ ${path} text)
    set(name "([A-Za-z_][A-Za-z0-9_:]*(<[^<>;]*>)?)")
    # (A line break between a kernel's name and its <<< stays, inside the call.)
    string(REGEX REPLACE "${name}([ \t\n]*)<<<([^;]*)>>>\\(\\)"
           "::cuda_emulation::launch(\\3{\"\\1\", ::cuda_emulation::address_of(\\1), \\4}, [&](auto... a) { \\1(a...); })" text "${text}")
    string(REGEX REPLACE "${name}([ \t\n]*)<<<([^;]*)>>>\\("
           "::cuda_emulation::launch(\\3{\"\\1\", ::cuda_emulation::address_of(\\1), \\4}, [&](auto... a) { \\1(a...); }, " text "${text}")
    string(REGEX REPLACE
           "extern __shared__ (__align__\\([0-9]+\\) )?([^;\\[]*[^A-Za-z0-9_;\\[])([A-Za-z_][A-Za-z0-9_]*)\\[\\];"
           "\\2* \\3 = reinterpret_cast<\\2*>(::cuda_emulation::dynamic_shared_memory());" text "${text}")
    set(prologue "#line 1 \"${path}\"\n")
    if(rel MATCHES "\\.cu$")
      set(prologue "#include \"${QKV_CUDA_EMULATION_DIR}/cuda_emulation.h\"\n${prologue}")
      string(REGEX REPLACE "\\.cu$" ".cpp" rel ${rel})
      list(APPEND sources ${out_dir}/${rel})
    endif()
    set(new "${prologue}${text}")
    set(old "")
    if(EXISTS ${out_dir}/${rel})
      file(READ ${out_dir}/${rel} old)
    endif()
    if(NOT old STREQUAL new)
      file(WRITE ${out_dir}/${rel} "${new}")
    endif()
  endforeach()
  set(${sources_var} ${sources} PARENT_SCOPE)
endfunction()
