// Reader for the safetensors format (https://huggingface.co/docs/safetensors):
//   8 bytes little-endian u64 N | N bytes JSON header | data
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end)} (offsets
// relative to the start of the data) plus an optional "__metadata__" string map.
//
// Every malformed file (truncated, header length beyond the file, invalid JSON, offsets out
// of range or overlapping, unknown dtype, shape/bytes mismatch) throws
// Error(ErrorCode::InvalidFile) naming the file and the problem; nothing is read out of range.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"

namespace anomalens {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64 };

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::string dtypeName;
  Shape shape;
  uint64_t begin = 0;  // byte offset into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Reads and validates the whole file. Throws Error(Io) when it cannot be read and
  // Error(InvalidFile) when it is malformed.
  static SafetensorsFile read(const std::string& path);
  // Parses an in-memory image of a file; `origin` names it in messages.
  static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string& origin);

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  // Tensor names in file order of their data offsets.
  std::vector<std::string> names() const;
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor converted to float32 (F32, F16, BF16 and F64 are accepted). Throws
  // Error(InvalidFile) naming the tensor for other dtypes.
  Tensor toFloat(const std::string& name) const;

 private:
  std::string path_;
  std::vector<uint8_t> bytes_;
  uint64_t dataStart_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Size in bytes of one element of `dtype`.
size_t dtypeSize(DType dtype);

}  // namespace anomalens
