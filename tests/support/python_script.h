// Test support: runs a script from tests/python with the reference interpreter
// ($QKV_PYTHON or /usr/bin/python3); throws with the script's output when it fails.
#pragma once
#include <string>

namespace qkv::test {
void run_python_script(const std::string& script, const std::string& args);
}
