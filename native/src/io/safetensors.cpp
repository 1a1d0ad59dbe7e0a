#include "anomalens/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "anomalens/core/error.h"

namespace anomalens {
namespace {

// Headers of real files are at most a few MB (thousands of tensors); a larger claimed
// length is a corrupt file, not a reason to allocate.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw Error(ErrorCode::InvalidFile, "invalid safetensors file '" + origin + "': " + what);
}

bool parseDType(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {
      {"F64", DType::F64},   {"F32", DType::F32},         {"F16", DType::F16},
      {"BF16", DType::BF16}, {"I64", DType::I64},         {"I32", DType::I32},
      {"I16", DType::I16},   {"I8", DType::I8},           {"U8", DType::U8},
      {"BOOL", DType::BOOL}, {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2},
      {"U16", DType::U16},   {"U32", DType::U32},         {"U64", DType::U64}};
  for (const auto& [name, dt] : table)
    if (s == name) {
      out = dt;
      return true;
    }
  return false;
}

float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::F64: case DType::I64: case DType::U64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: case DType::F8_E4M3: case DType::F8_E5M2:
      return 1;
  }
  return 1;
}

SafetensorsFile SafetensorsFile::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(ErrorCode::Io, "cannot open safetensors file '" + path + "'");
  std::streamoff size = in.tellg();
  if (size < 0) throw Error(ErrorCode::Io, "cannot read safetensors file '" + path + "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw Error(ErrorCode::Io, "cannot read safetensors file '" + path + "'");
  return parse(std::move(bytes), path);
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string& origin) {
  SafetensorsFile f;
  f.path_ = origin;
  f.bytes_ = std::move(bytes);
  const uint64_t size = f.bytes_.size();
  if (size < 8) bad(origin, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f.bytes_[i];
  if (n > kMaxHeaderBytes) bad(origin, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    bad(origin, "header length " + std::to_string(n) + " runs past the end of the file (" +
                    std::to_string(size) + " bytes): the file is truncated or not safetensors");
  f.dataStart_ = 8 + n;
  const uint64_t dataSize = size - f.dataStart_;

  // nlohmann keeps the last of duplicated keys silently; a file naming a tensor (or a
  // metadata key) twice is ambiguous, so the parser callback refuses it.
  nlohmann::json header;
  std::vector<std::vector<std::string>> keys;  // the keys seen, per open object
  std::string duplicate;
  auto seen = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::object_start) keys.emplace_back();
    else if (event == nlohmann::json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    else if (event == nlohmann::json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      auto& level = keys.back();
      if (std::find(level.begin(), level.end(), k) != level.end()) {
        duplicate = k;
        throw std::invalid_argument("duplicate key");
      }
      level.push_back(k);
    }
    return true;
  };
  try {
    header = nlohmann::json::parse(f.bytes_.begin() + 8, f.bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(n), seen);
  } catch (const nlohmann::json::exception& e) {
    bad(origin, std::string("header is not valid JSON (") + e.what() + ")");
  } catch (const std::invalid_argument&) {
    bad(origin, "header names '" + duplicate + "' twice");
  }
  if (!header.is_object()) bad(origin, "header is not a JSON object");

  std::vector<const SafetensorsEntry*> byOffset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    // The names become keys of JavaScript objects, where '__proto__' is not a key but the prototype.
    if (name == "__proto__") bad(origin, "a tensor named '__proto__' is not allowed");
    if (name == "__metadata__") {
      if (!v.is_object()) bad(origin, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(origin, "__metadata__ value of '" + m.key() + "' is not a string");
        if (m.key() == "__proto__") bad(origin, "a __metadata__ key named '__proto__' is not allowed");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) bad(origin, "entry '" + name + "' is not an object");
    SafetensorsEntry e;
    e.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) bad(origin, "tensor '" + name + "' has no dtype string");
    e.dtypeName = dt->get<std::string>();
    if (!parseDType(e.dtypeName, e.dtype)) bad(origin, "tensor '" + name + "' has unknown dtype '" + e.dtypeName + "'");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) bad(origin, "tensor '" + name + "' has no shape array");
    uint64_t count = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) bad(origin, "tensor '" + name + "' has a shape entry that is not a non-negative integer");
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / dim))
        bad(origin, "tensor '" + name + "' shape overflows");
      count *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      bad(origin, "tensor '" + name + "' has no data_offsets [begin, end] of non-negative integers");
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.begin > e.end) bad(origin, "tensor '" + name + "' has data_offsets begin > end");
    if (e.end > dataSize)
      bad(origin, "tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                      std::to_string(e.end) + ") run past the data section (" +
                      std::to_string(dataSize) + " bytes): the file is truncated");
    uint64_t expected = count * dtypeSize(e.dtype);
    if (e.end - e.begin != expected)
      bad(origin, "tensor '" + name + "' holds " + std::to_string(e.end - e.begin) + " bytes but " +
                      e.dtypeName + " " + shapeString(e.shape) + " needs " + std::to_string(expected));
    auto [pos, inserted] = f.entries_.emplace(name, std::move(e));
    if (!inserted) bad(origin, "tensor '" + name + "' appears twice");
    byOffset.push_back(&pos->second);
  }
  std::sort(byOffset.begin(), byOffset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < byOffset.size(); ++i) {
    const SafetensorsEntry* a = byOffset[i - 1];
    const SafetensorsEntry* b = byOffset[i];
    if (b->begin < a->end && b->end > b->begin && a->end > a->begin)
      bad(origin, "tensors '" + a->name + "' and '" + b->name + "' overlap in the data section");
  }
  return f;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    throw Error(ErrorCode::WeightsMismatch, "tensor '" + name + "' is not in '" + path_ + "'");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<const SafetensorsEntry*> v;
  for (const auto& kv : entries_) v.push_back(&kv.second);
  std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  std::vector<std::string> out;
  for (auto* e : v) out.push_back(e->name);
  return out;
}

Tensor SafetensorsFile::toFloat(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  Tensor t(e.shape);
  const uint8_t* src = bytes_.data() + dataStart_ + e.begin;
  float* dst = t.data();
  const int64_t n = t.numel();
  switch (e.dtype) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = halfToFloat(h);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      break;
    default:
      throw Error(ErrorCode::InvalidFile, "tensor '" + name + "' in '" + path_ + "' has dtype " + e.dtypeName +
                                              "; expected F32, F16, BF16 or F64");
  }
  return t;
}

}  // namespace anomalens
