#include "support/python_script.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace qkv::test {

void run_python_script(const std::string& script, const std::string& args) {
  const char* env = std::getenv("QKV_PYTHON");
  std::string cmd = std::string(env ? env : "/usr/bin/python3") + " " + QKV_TEST_PYTHON_DIR + "/" +
                    script + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + cmd);
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  if (pclose(p) != 0) throw std::runtime_error(cmd + " failed:\n" + output);
}

}  // namespace qkv::test
