#include "knn/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "anomalens/core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the anomalens file container is written for little-endian hosts"
#endif

namespace anomalens::knn_detail {

namespace {

constexpr uint64_t P1 = 11400714785074694791ULL;
constexpr uint64_t P2 = 14029467366897019727ULL;
constexpr uint64_t P3 = 1609587929392839161ULL;
constexpr uint64_t P4 = 9650029242287828579ULL;
constexpr uint64_t P5 = 2870177450012600261ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t round64(uint64_t acc, uint64_t lane) { return rotl(acc + lane * P2, 31) * P1; }
inline uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string errnoText() { return std::strerror(errno); }

void encodeHeader(const ContainerHeader& h, unsigned char out[kContainerHeaderBytes]) {
  std::memset(out, 0, kContainerHeaderBytes);
  std::memcpy(out + 0, h.magic, 8);
  std::memcpy(out + 8, &h.version, 4);
  std::memcpy(out + 12, &h.headerBytes, 4);
  std::memcpy(out + 16, &h.payloadBytes, 8);
  std::memcpy(out + 24, &h.payloadHash, 8);
  std::memcpy(out + 32, &h.metric, 4);
  std::memcpy(out + 36, &h.flags, 4);
  std::memcpy(out + 40, &h.rows, 8);
  std::memcpy(out + 48, &h.dim, 8);
  uint64_t hash = xxh64(out, 56);
  std::memcpy(out + 56, &hash, 8);
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : v_{seed + P1 + P2, seed + P2, seed, seed - P1}, seed_(seed) {}

void Xxh64::update(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += bytes;
  if (bufLen_ + bytes < 32) {
    std::memcpy(buf_ + bufLen_, p, bytes);
    bufLen_ += bytes;
    return;
  }
  if (bufLen_) {
    size_t fill = 32 - bufLen_;
    std::memcpy(buf_ + bufLen_, p, fill);
    for (int i = 0; i < 4; ++i) v_[i] = round64(v_[i], read64(buf_ + 8 * i));
    p += fill;
    bytes -= fill;
    bufLen_ = 0;
  }
  uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
  for (; bytes >= 32; p += 32, bytes -= 32) {
    v0 = round64(v0, read64(p));
    v1 = round64(v1, read64(p + 8));
    v2 = round64(v2, read64(p + 16));
    v3 = round64(v3, read64(p + 24));
  }
  v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
  std::memcpy(buf_, p, bytes);
  bufLen_ = bytes;
}

uint64_t Xxh64::digest() const {
  uint64_t acc;
  if (total_ >= 32) {
    acc = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) acc = merge64(acc, v_[i]);
  } else {
    acc = seed_ + P5;
  }
  acc += total_;
  const unsigned char* p = buf_;
  size_t left = bufLen_;
  for (; left >= 8; p += 8, left -= 8) acc = rotl(acc ^ round64(0, read64(p)), 27) * P1 + P4;
  if (left >= 4) {
    acc = rotl(acc ^ (static_cast<uint64_t>(read32(p)) * P1), 23) * P2 + P3;
    p += 4;
    left -= 4;
  }
  for (; left > 0; ++p, --left) acc = rotl(acc ^ (*p * P5), 11) * P1;
  acc ^= acc >> 33;
  acc *= P2;
  acc ^= acc >> 29;
  acc *= P3;
  acc ^= acc >> 32;
  return acc;
}

uint64_t xxh64(const void* data, size_t bytes, uint64_t seed) {
  Xxh64 h(seed);
  h.update(data, bytes);
  return h.digest();
}

void writeContainer(const std::string& path, ContainerHeader header,
                    const std::vector<std::pair<const void*, size_t>>& payload) {
  Xxh64 hash;
  header.payloadBytes = 0;
  for (const auto& [data, bytes] : payload) {
    hash.update(data, bytes);
    header.payloadBytes += bytes;
  }
  header.payloadHash = hash.digest();
  unsigned char head[kContainerHeaderBytes];
  encodeHeader(header, head);

  // "<path>.tmp-<pid>-<8 hex>": the name lib/core/atomic.ts sweeps once the pid is dead.
  std::random_device rd;
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%08x", static_cast<long>(::getpid()), static_cast<unsigned>(rd()));
  const std::string tmp = path + suffix;
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(ErrorCode::Io, "cannot write '" + path + "': " + errnoText());
  bool ok = std::fwrite(head, 1, sizeof head, f) == sizeof head;
  for (const auto& [data, bytes] : payload) {
    // fwrite of multi-GB spans is fine on glibc, but chunks keep progress of a slow disk visible.
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t done = 0; ok && done < bytes;) {
      size_t chunk = std::min<size_t>(bytes - done, size_t{64} << 20);
      ok = std::fwrite(p + done, 1, chunk, f) == chunk;
      done += chunk;
    }
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  std::string why = ok ? "" : errnoText();
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    why = errnoText();
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    why = errnoText();
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(ErrorCode::Io, "cannot write '" + path + "': " + why);
  }
  // Make the rename itself durable (best effort: some file systems refuse fsync on folders).
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  int fd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

ContainerReader::ContainerReader(const std::string& path, const char* magic, const char* what)
    : path_(path), what_(what) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) throw Error(ErrorCode::Io, "cannot open " + what_ + " '" + path + "': " + errnoText());
  struct stat st {};
  if (::fstat(fileno(file_), &st) != 0) throw Error(ErrorCode::Io, "cannot stat '" + path + "': " + errnoText());
  const uint64_t fileBytes = static_cast<uint64_t>(st.st_size);
  if (fileBytes < kContainerHeaderBytes)
    fail("truncated: the file has " + std::to_string(fileBytes) + " bytes, less than the " +
         std::to_string(kContainerHeaderBytes) + "-byte header of an anomalens " + what_);
  unsigned char head[kContainerHeaderBytes];
  if (std::fread(head, 1, sizeof head, file_) != sizeof head)
    throw Error(ErrorCode::Io, "cannot read '" + path + "': " + errnoText());
  if (std::memcmp(head, magic, 8) != 0) fail("not an anomalens " + what_ + " file (bad magic bytes)");
  uint64_t storedHash;
  std::memcpy(&storedHash, head + 56, 8);
  if (storedHash != xxh64(head, 56)) fail("corrupted: the header checksum does not match");
  std::memcpy(header_.magic, head, 8);
  std::memcpy(&header_.version, head + 8, 4);
  std::memcpy(&header_.headerBytes, head + 12, 4);
  std::memcpy(&header_.payloadBytes, head + 16, 8);
  std::memcpy(&header_.payloadHash, head + 24, 8);
  std::memcpy(&header_.metric, head + 32, 4);
  std::memcpy(&header_.flags, head + 36, 4);
  std::memcpy(&header_.rows, head + 40, 8);
  std::memcpy(&header_.dim, head + 48, 8);
  if (header_.version != kContainerVersion)
    fail("format version " + std::to_string(header_.version) + " is not supported (this build reads version " +
         std::to_string(kContainerVersion) + ")");
  if (header_.headerBytes != kContainerHeaderBytes)
    fail("unexpected header size " + std::to_string(header_.headerBytes));
  const uint64_t expected = kContainerHeaderBytes + header_.payloadBytes;
  if (fileBytes < expected)
    fail("truncated: the header announces " + std::to_string(expected) + " bytes but the file has " +
         std::to_string(fileBytes));
  if (fileBytes > expected)
    fail("corrupted: " + std::to_string(fileBytes - expected) + " unexpected bytes after the payload");
}

ContainerReader::~ContainerReader() {
  if (file_) std::fclose(file_);
}

void ContainerReader::readPayload(void* out) {
  auto* p = static_cast<unsigned char*>(out);
  Xxh64 hash;
  for (uint64_t done = 0; done < header_.payloadBytes;) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(header_.payloadBytes - done, uint64_t{16} << 20));
    if (std::fread(p + done, 1, chunk, file_) != chunk)
      throw Error(ErrorCode::Io, "cannot read '" + path_ + "': " + errnoText());
    hash.update(p + done, chunk);
    done += chunk;
  }
  if (hash.digest() != header_.payloadHash) fail("corrupted: the payload checksum does not match");
}

void ContainerReader::fail(const std::string& message) const {
  throw Error(ErrorCode::InvalidFile, "invalid " + what_ + " file '" + path_ + "': " + message);
}

}  // namespace anomalens::knn_detail
