// make_random_models OUT: writes OUT/translation, OUT/gpt and OUT/vit (tests/support/
// random_model_dirs.h) for the tests outside C++: the Python module's and the browser's.
#include <cstdio>
#include <exception>

#include "support/random_model_dirs.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_random_models OUT\n");
    return 2;
  }
  try {
    std::string out = argv[1];
    qkv::test::write_random_translation_dir(out + "/translation", 1);
    qkv::test::write_random_gpt_dir(out + "/gpt", 3);
    qkv::test::write_random_vit_dir(out + "/vit", 4);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_random_models: %s\n", e.what());
    return 1;
  }
  return 0;
}
