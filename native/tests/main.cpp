// The native core's test program: every op family against a slow, obvious reference.
// Usage: anomalens_native_tests [substring]   (runs the tests whose name contains it)
#include <unistd.h>

#include <cstdlib>
#include <exception>

#include "anomalens/core/error.h"
#include "harness.h"

namespace anomalens::tests {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

int& failures() {
  static int n = 0;
  return n;
}

std::string tempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/anomalens-native-" + std::to_string(getpid()) + "-" + name;
}

}  // namespace anomalens::tests

int main(int argc, char** argv) {
  using namespace anomalens::tests;
  const std::string filter = argc > 1 ? argv[1] : "";
  int passed = 0, failed = 0;
  for (const TestCase& t : registry()) {
    if (!filter.empty() && std::string(t.name).find(filter) == std::string::npos) continue;
    failures() = 0;
    try {
      t.fn();
    } catch (const anomalens::Error& e) {
      ++failures();
      std::cerr << "  FAIL uncaught anomalens::Error(" << e.codeName() << "): " << e.what() << "\n";
    } catch (const std::exception& e) {
      ++failures();
      std::cerr << "  FAIL uncaught exception: " << e.what() << "\n";
    }
    if (failures() == 0) {
      ++passed;
      std::cout << "ok   " << t.name << "\n";
    } else {
      ++failed;
      std::cout << "FAIL " << t.name << " (" << failures() << " checks)\n";
    }
  }
  std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed == 0 ? 0 : 1;
}
