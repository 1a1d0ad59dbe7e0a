#include "anomalens/knn/bank.h"

#include <cstring>
#include <limits>

#include "anomalens/core/error.h"
#include "knn/file.h"
#include "knn/screen.h"

namespace anomalens {

namespace {
constexpr char kBankMagic[8] = {'A', 'N', 'M', 'L', 'B', 'A', 'N', 'K'};
}

MemoryBank::MemoryBank(int64_t dim, Metric metric, bool screening) : dim_(dim), metric_(metric) {
  require(dim >= 1 && dim <= (int64_t{1} << 24), "MemoryBank: dim must be in [1, 16777216], received " +
                                                      std::to_string(dim));
  if (screening && (metric == Metric::L2Squared || metric == Metric::L2) && knn_detail::screeningSupported())
    screened_ = std::make_unique<knn_detail::ScreenedDatabase>();
}

MemoryBank::~MemoryBank() = default;
MemoryBank::MemoryBank(MemoryBank&&) noexcept = default;
MemoryBank& MemoryBank::operator=(MemoryBank&&) noexcept = default;

void MemoryBank::reserve(int64_t rows) {
  require(rows >= 0 && rows <= std::numeric_limits<int32_t>::max(),
          "MemoryBank.reserve: rows must be in [0, 2^31 - 1], received " + std::to_string(rows));
  rows_.reserve(static_cast<size_t>(rows * dim_));
  if (knnUsesNorms(metric_)) norms_.reserve(static_cast<size_t>(rows));
}

void MemoryBank::add(const float* rows, int64_t n) {
  require(n >= 0, "MemoryBank.add: n must be >= 0");
  require(size_ + n <= std::numeric_limits<int32_t>::max(),
          "MemoryBank.add: a bank holds at most 2^31 - 1 rows; it has " + std::to_string(size_) +
              " and " + std::to_string(n) + " more were added");
  if (n == 0) return;
  rows_.insert(rows_.end(), rows, rows + n * dim_);
  if (knnUsesNorms(metric_)) {
    norms_.resize(static_cast<size_t>(size_ + n));
    knnDatabaseNorms(rows_.data() + size_ * dim_, n, dim_, metric_, norms_.data() + size_);
  }
  if (screened_) screened_->append(rows_.data() + size_ * dim_, n, dim_);
  size_ += n;
}

void MemoryBank::search(const float* queries, int64_t m, int64_t k, float* distances, int32_t* indices,
                        KnnScreening screening) const {
  require(size_ > 0, "MemoryBank.search: the bank is empty; add rows first");
  require(k <= size_, "MemoryBank.search: k = " + std::to_string(k) + " exceeds the bank size " +
                          std::to_string(size_));
  require(k >= 1 && k <= kKnnMaxK, "MemoryBank.search: k must be in [1, 1024], received " + std::to_string(k));
  knn_detail::searchExact(rows_.data(), size_, queries, m, dim_, k, metric_, norms_.empty() ? nullptr : norms_.data(),
                          screened_.get(), screened_ ? screening : KnnScreening::Off, distances, indices);
}

void MemoryBank::save(const std::string& path) const {
  knn_detail::ContainerHeader h;
  std::memcpy(h.magic, kBankMagic, 8);
  h.metric = static_cast<uint32_t>(metric_);
  h.rows = static_cast<uint64_t>(size_);
  h.dim = static_cast<uint64_t>(dim_);
  knn_detail::writeContainer(path, h, {{rows_.data(), rows_.size() * sizeof(float)}});
}

MemoryBank MemoryBank::load(const std::string& path, bool screening) {
  knn_detail::ContainerReader reader(path, kBankMagic, "memory bank");
  const auto& h = reader.header();
  if (h.metric > static_cast<uint32_t>(Metric::Cosine)) reader.fail("unknown metric code " + std::to_string(h.metric));
  if (h.dim < 1 || h.dim > (uint64_t{1} << 24)) reader.fail("invalid dimension " + std::to_string(h.dim));
  if (h.rows > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
    reader.fail("invalid row count " + std::to_string(h.rows));
  if (h.payloadBytes != h.rows * h.dim * sizeof(float))
    reader.fail("payload of " + std::to_string(h.payloadBytes) + " bytes does not hold " + std::to_string(h.rows) +
                " x " + std::to_string(h.dim) + " float32 values");
  MemoryBank bank(static_cast<int64_t>(h.dim), static_cast<Metric>(h.metric), screening);
  bank.rows_.resize(static_cast<size_t>(h.rows * h.dim));
  reader.readPayload(bank.rows_.data());
  bank.size_ = static_cast<int64_t>(h.rows);
  if (knnUsesNorms(bank.metric_)) {
    bank.norms_.resize(static_cast<size_t>(bank.size_));
    knnDatabaseNorms(bank.rows_.data(), bank.size_, bank.dim_, bank.metric_, bank.norms_.data());
  }
  if (bank.screened_) bank.screened_->append(bank.rows_.data(), bank.size_, bank.dim_);
  return bank;
}

}  // namespace anomalens
