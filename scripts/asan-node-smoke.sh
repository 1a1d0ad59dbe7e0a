#!/bin/sh
# Node smoke suite against the addon built with AddressSanitizer and UndefinedBehaviorSanitizer:
# backbone, kNN (bank and faiss), maps, metrics, detectors, safetensors and the fuzzed readers.
# Node itself is not instrumented, so libasan is preloaded and leak checking is off (V8 keeps
# its heap until exit). Any ASan or UBSan report aborts the process and fails the suite.
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build-asan/Release/anomalens.node ] || [ -n "$(find native bindings CMakeLists.txt -newer build-asan/Release/anomalens.node -print -quit)" ]; then
  npx cmake-js compile --out build-asan --CDANOMALENS_SANITIZE=address,undefined --CDANOMALENS_TESTS=OFF
fi
[ -f dist/lib/index.js ] || npm run build:ts
LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
export ANOMALENS_NATIVE="$PWD/build-asan/Release/anomalens.node"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ANOMALENS_FUZZ_COUNT=${ANOMALENS_FUZZ_COUNT:-200}
npx vitest run test/nn test/knn test/maps test/metrics/metrics.test.ts test/detector test/io/safetensors.test.ts test/core/fuzz.test.ts "$@"
