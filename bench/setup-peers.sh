#!/usr/bin/env bash
# kNN bench peers, installed into bench/.peers (gitignored), never into package.json:
#   faiss-node: the npm binding Node users pick today. Its install script clones faiss from
#   GitHub (unreachable here), so install it with --ignore-scripts and build it against
#   Debian's libfaiss-dev 1.7.3 (the same faiss anomalens links): its CMakeLists gets
#   find_package(OpenMP) + find_package(faiss) instead of add_subdirectory(deps/faiss), and its
#   sources faiss::Index::idx_t instead of faiss::idx_t (1.7.4+ spelling).
# The other peer, faiss' IndexFlatL2, runs through anomalens itself (FaissIndex 'Flat').
# Usage: bash bench/setup-peers.sh   (then: npm run build && npm run bench -- knn)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
peers="$here/.peers"
version=0.5.1

mkdir -p "$peers"
npm install --ignore-scripts --no-audit --no-fund --no-save --prefix "$peers" "faiss-node@$version"
pkg="$peers/node_modules/faiss-node"
cd "$pkg"

if ! grep -q 'find_package(faiss REQUIRED)' CMakeLists.txt; then
  # Debian's faiss instead of the vendored one; its imported target takes no output dirs.
  perl -0pi -e 's/add_subdirectory\("deps\/faiss"\)\nset_target_properties\(faiss PROPERTIES.*?\n\)/find_package(OpenMP REQUIRED)\nfind_package(faiss REQUIRED)/s' CMakeLists.txt
  # The post-build step copies libopenblas & co next to the addon and patchelf's them (a
  # prebuild packaging step); the system libraries are found without it.
  perl -0pi -e 's/if\(EXISTS "\/etc\/debian_version"\).*?\n    endif\(\)\n    if\(EXISTS "\/etc\/alpine-release"\)/if(EXISTS "\/etc\/alpine-release")/s' CMakeLists.txt
fi
grep -q 'find_package(faiss REQUIRED)' CMakeLists.txt || { echo "setup-peers: patching faiss-node's CMakeLists failed" >&2; exit 1; }
sed -i 's/faiss::idx_t/faiss::Index::idx_t/g' src/*.cc

addon_api="$(cd "$peers" && node -p "require('node-addon-api').include_dir")"
"$root/node_modules/.bin/cmake-js" compile --out build -- -DCMAKE_CXX_FLAGS="-I$addon_api" >/tmp/faiss-node-build.log 2>&1 || {
  tail -40 /tmp/faiss-node-build.log >&2
  exit 1
}
node -e "const f = require('$pkg'); const i = new f.IndexFlatL2(2); i.add([0, 0, 1, 1]); console.log('faiss-node', '$version', 'built against Debian faiss:', JSON.stringify(i.search([1, 1], 1)))"
