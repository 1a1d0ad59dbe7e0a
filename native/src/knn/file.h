// The file container shared by MemoryBank and FaissIndex files (internal to native/src).
//
// Layout, little-endian, 64-byte header then the payload:
//   0  char[8] magic        "ANMLBANK" (memory bank) or "ANMLFAIS" (faiss index)
//   8  u32     version      1
//   12 u32     headerBytes  64
//   16 u64     payloadBytes
//   24 u64     payloadHash  XXH64(payload, seed 0)
//   32 u32     metric       anomalens::Metric as an integer
//   36 u32     flags        0
//   40 u64     rows
//   48 u64     dim
//   56 u64     headerHash   XXH64(bytes 0..55, seed 0)
// Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the
// destination, so a crash never leaves a half-written file under the final name.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace anomalens::knn_detail {

constexpr uint32_t kContainerVersion = 1;
constexpr size_t kContainerHeaderBytes = 64;

struct ContainerHeader {
  char magic[8];
  uint32_t version = kContainerVersion;
  uint32_t headerBytes = kContainerHeaderBytes;
  uint64_t payloadBytes = 0;
  uint64_t payloadHash = 0;
  uint32_t metric = 0;
  uint32_t flags = 0;
  uint64_t rows = 0;
  uint64_t dim = 0;
};

// XXH64 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), streaming form.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t bytes);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t bufLen_ = 0;
};
uint64_t xxh64(const void* data, size_t bytes, uint64_t seed = 0);

// Writes header + payload parts to `path` atomically. Throws Error(Io) naming the path.
void writeContainer(const std::string& path, ContainerHeader header,
                    const std::vector<std::pair<const void*, size_t>>& payload);

// An open container whose header has been validated against the file size.
class ContainerReader {
 public:
  // Opens `path` and validates magic, header hash, version and total size. `what` names the
  // expected content in messages ("memory bank"). Throws Error(Io) when the file cannot be
  // read and Error(InvalidFile) for a malformed, truncated or corrupted one.
  ContainerReader(const std::string& path, const char* magic, const char* what);
  ~ContainerReader();
  ContainerReader(const ContainerReader&) = delete;
  ContainerReader& operator=(const ContainerReader&) = delete;

  const ContainerHeader& header() const { return header_; }
  // Reads the whole payload into `out` (header().payloadBytes bytes) and checks its hash.
  void readPayload(void* out);
  // Throws Error(InvalidFile) with "<path>: <message>".
  [[noreturn]] void fail(const std::string& message) const;

 private:
  std::string path_;
  std::string what_;
  std::FILE* file_ = nullptr;
  ContainerHeader header_;
};

}  // namespace anomalens::knn_detail
