#include "anomalens/knn/faiss.h"

#include <faiss/AutoTune.h>
#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "anomalens/core/error.h"
#include "knn/file.h"

namespace anomalens {

namespace {

constexpr char kFaissMagic[8] = {'A', 'N', 'M', 'L', 'F', 'A', 'I', 'S'};

// "Error in <function> at <file>:<line>: <message>" -> "<message>".
std::string faissMessage(const faiss::FaissException& e) {
  std::string m = e.what();
  if (m.rfind("Error in ", 0) == 0) {
    size_t at = m.find(" at ");
    size_t colon = at == std::string::npos ? std::string::npos : m.find(": ", at);
    if (colon != std::string::npos) m = m.substr(colon + 2);
  }
  return m;
}

// Runs a faiss call, turning its exceptions into anomalens errors with `code`.
template <typename F>
auto callFaiss(const std::string& what, ErrorCode code, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const faiss::FaissException& e) {
    throw Error(code, what + ": faiss: " + faissMessage(e));
  }
}

faiss::IndexHNSW* findHnsw(faiss::Index* index) {
  for (int depth = 0; index && depth < 8; ++depth) {
    if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index)) return h;
    auto* pre = dynamic_cast<faiss::IndexPreTransform*>(index);
    index = pre ? pre->index : nullptr;
  }
  return nullptr;
}

}  // namespace

FaissIndex::FaissIndex(int64_t d, const std::string& factory, Metric metric) : factory_(factory), metric_(metric) {
  require(d >= 1 && d <= (int64_t{1} << 24), "FaissIndex: d must be in [1, 16777216], received " + std::to_string(d));
  require(metric == Metric::L2Squared || metric == Metric::InnerProduct,
          std::string("FaissIndex: metric must be 'l2sq' or 'ip', received '") + metricName(metric) + "'");
  faiss::MetricType mt = metric == Metric::L2Squared ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
  index_.reset(callFaiss("FaissIndex('" + factory + "')", ErrorCode::InvalidArgument,
                         [&] { return faiss::index_factory(static_cast<int>(d), factory.c_str(), mt); }));
}

FaissIndex::~FaissIndex() = default;
FaissIndex::FaissIndex(FaissIndex&&) noexcept = default;
FaissIndex& FaissIndex::operator=(FaissIndex&&) noexcept = default;

int64_t FaissIndex::dim() const { return index_->d; }
int64_t FaissIndex::size() const { return index_->ntotal; }
bool FaissIndex::isTrained() const { return index_->is_trained; }

void FaissIndex::train(const float* x, int64_t n) {
  require(n >= 1, "FaissIndex.train: at least one training row is needed");
  callFaiss("FaissIndex.train", ErrorCode::InvalidArgument, [&] { index_->train(n, x); });
}

void FaissIndex::add(const float* x, int64_t n) {
  require(index_->is_trained, "FaissIndex.add: the index '" + factory_ + "' must be trained first; call train()");
  require(index_->ntotal + n <= std::numeric_limits<int32_t>::max(),
          "FaissIndex.add: an index holds at most 2^31 - 1 rows");
  if (n == 0) return;
  callFaiss("FaissIndex.add", ErrorCode::InvalidArgument, [&] { index_->add(n, x); });
}

void FaissIndex::search(const float* queries, int64_t m, int64_t k, float* distances, int32_t* indices) const {
  require(k >= 1 && k <= kKnnMaxK, "FaissIndex.search: k must be in [1, 1024], received " + std::to_string(k));
  require(k <= index_->ntotal, "FaissIndex.search: k = " + std::to_string(k) + " exceeds the index size " +
                                   std::to_string(index_->ntotal));
  if (m == 0) return;
  // faiss labels are 64-bit; search in slices so the temporary stays small.
  constexpr int64_t kSlice = 4096;
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(std::min(m, kSlice) * k));
  for (int64_t i0 = 0; i0 < m; i0 += kSlice) {
    int64_t rows = std::min(kSlice, m - i0);
    callFaiss("FaissIndex.search", ErrorCode::InvalidArgument, [&] {
      index_->search(rows, queries + i0 * index_->d, k, distances + i0 * k, labels.data());
    });
    for (int64_t j = 0; j < rows * k; ++j) indices[i0 * k + j] = static_cast<int32_t>(labels[j]);
  }
}

int64_t FaissIndex::nprobe() const {
  const faiss::IndexIVF* ivf = faiss::ivflib::try_extract_index_ivf(index_.get());
  return ivf ? static_cast<int64_t>(ivf->nprobe) : -1;
}

void FaissIndex::setNprobe(int64_t nprobe) {
  faiss::IndexIVF* ivf = faiss::ivflib::try_extract_index_ivf(index_.get());
  require(ivf != nullptr, "FaissIndex.nprobe applies to IVF indexes; '" + factory_ + "' has no IVF level",
          ErrorCode::Unsupported);
  require(nprobe >= 1 && nprobe <= static_cast<int64_t>(ivf->nlist),
          "FaissIndex.nprobe must be in [1, nlist = " + std::to_string(ivf->nlist) + "], received " +
              std::to_string(nprobe));
  ivf->nprobe = static_cast<size_t>(nprobe);
}

int64_t FaissIndex::efSearch() const {
  const faiss::IndexHNSW* h = findHnsw(index_.get());
  return h ? h->hnsw.efSearch : -1;
}

void FaissIndex::setEfSearch(int64_t efSearch) {
  faiss::IndexHNSW* h = findHnsw(index_.get());
  require(h != nullptr, "FaissIndex.efSearch applies to HNSW indexes; '" + factory_ + "' is not one",
          ErrorCode::Unsupported);
  require(efSearch >= 1 && efSearch <= (1 << 20), "FaissIndex.efSearch must be in [1, 1048576], received " +
                                                      std::to_string(efSearch));
  h->hnsw.efSearch = static_cast<int>(efSearch);
}

void FaissIndex::save(const std::string& path) const {
  faiss::VectorIOWriter writer;
  callFaiss("FaissIndex.save", ErrorCode::Internal, [&] { faiss::write_index(index_.get(), &writer); });
  // Payload: u32 factory length, the factory string, then faiss' own serialisation.
  uint32_t len = static_cast<uint32_t>(factory_.size());
  knn_detail::ContainerHeader h;
  std::memcpy(h.magic, kFaissMagic, 8);
  h.metric = static_cast<uint32_t>(metric_);
  h.rows = static_cast<uint64_t>(index_->ntotal);
  h.dim = static_cast<uint64_t>(index_->d);
  knn_detail::writeContainer(path, h,
                             {{&len, sizeof len}, {factory_.data(), factory_.size()}, {writer.data.data(), writer.data.size()}});
}

namespace {

// faiss::read_index trusts the bytes: ids and offsets out of range crash a later search. The
// payload is checksummed, so this only matters for a file forged or re-sealed on purpose, but a
// reader must not crash on any file. Checks the invariants search relies on for the index
// kinds anomalens builds (Flat, HNSW, IVF-Flat, IVF-PQ, behind an optional pre-transform);
// returns what is wrong, or an empty string.
std::string checkIndex(const faiss::Index* index, int depth = 0) {
  if (!index) return "no index";
  if (depth > 4) return "too deeply nested";
  if (index->d <= 0 || index->ntotal < 0) return "invalid dimension or size";
  const auto n = static_cast<int64_t>(index->ntotal);
  if (const auto* pre = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
    if (pre->index == nullptr || pre->index->ntotal != index->ntotal) return "the transformed index does not match";
    for (const auto* t : pre->chain)
      if (t == nullptr || t->d_in <= 0 || t->d_out <= 0) return "an invalid transform";
    return checkIndex(pre->index, depth + 1);
  }
  if (const auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(index)) {
    if (flat->code_size == 0 || flat->codes.size() != static_cast<size_t>(n) * flat->code_size) return "the stored vectors do not match the size";
    return "";
  }
  if (const auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) {
    if (h->storage == nullptr || h->storage->ntotal != index->ntotal || h->storage->d != index->d) return "the HNSW storage does not match";
    const auto& g = h->hnsw;
    if (g.levels.size() != static_cast<size_t>(n) || g.offsets.size() != static_cast<size_t>(n) + 1) return "the HNSW graph does not match the size";
    if (g.entry_point < -1 || g.entry_point >= n || (n > 0 && g.entry_point < 0)) return "the HNSW entry point is out of range";
    const int levelsKnown = static_cast<int>(g.cum_nneighbor_per_level.size()) - 1;
    if (g.max_level < -1 || g.max_level >= levelsKnown) return "the HNSW level count is out of range";
    for (int64_t i = 0; i < n; ++i) {
      if (g.levels[i] < 1 || g.levels[i] > g.max_level + 1) return "an HNSW level is out of range";
      if (g.offsets[i] > g.offsets[i + 1]) return "the HNSW offsets are not sorted";
      if (g.offsets[i + 1] - g.offsets[i] != static_cast<size_t>(g.cum_nneighbor_per_level[g.levels[i]])) return "an HNSW neighbour list has the wrong length";
    }
    if (g.offsets[n] != g.neighbors.size()) return "the HNSW offsets do not match the neighbour lists";
    for (auto v : g.neighbors)
      if (v < -1 || v >= n) return "an HNSW neighbour id is out of range";
    return checkIndex(h->storage, depth + 1);
  }
  if (const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index)) {
    if (ivf->quantizer == nullptr || ivf->quantizer->d != index->d || static_cast<int64_t>(ivf->quantizer->ntotal) != static_cast<int64_t>(ivf->nlist)) return "the IVF quantizer does not match";
    std::string q = checkIndex(ivf->quantizer, depth + 1);
    if (!q.empty()) return q;
    const auto* lists = ivf->invlists;
    if (lists == nullptr || lists->nlist != ivf->nlist || lists->code_size != ivf->code_size) return "the IVF lists do not match";
    int64_t total = 0;
    for (size_t l = 0; l < lists->nlist; ++l) {
      const size_t m = lists->list_size(l);
      total += static_cast<int64_t>(m);
      faiss::InvertedLists::ScopedIds ids(lists, l);
      for (size_t j = 0; j < m; ++j)
        if (ids[j] < 0 || ids[j] >= n) return "an IVF list id is out of range";
    }
    if (total != n) return "the IVF lists do not hold the index size";
    return "";
  }
  return "";
}

}  // namespace

FaissIndex FaissIndex::load(const std::string& path) {
  knn_detail::ContainerReader reader(path, kFaissMagic, "faiss index");
  const auto& h = reader.header();
  if (h.metric != static_cast<uint32_t>(Metric::L2Squared) && h.metric != static_cast<uint32_t>(Metric::InnerProduct))
    reader.fail("unknown metric code " + std::to_string(h.metric));
  if (h.payloadBytes < 4 || h.payloadBytes > (uint64_t{1} << 40)) reader.fail("invalid payload size");
  faiss::VectorIOReader faissReader;
  faissReader.data.resize(static_cast<size_t>(h.payloadBytes));
  reader.readPayload(faissReader.data.data());
  uint32_t len;
  std::memcpy(&len, faissReader.data.data(), 4);
  if (len > h.payloadBytes - 4 || len > 4096) reader.fail("invalid factory string length");
  FaissIndex out;
  out.factory_.assign(reinterpret_cast<const char*>(faissReader.data.data()) + 4, len);
  out.metric_ = static_cast<Metric>(h.metric);
  faissReader.rp = 4 + len;
  try {
    out.index_.reset(faiss::read_index(&faissReader));
  } catch (const faiss::FaissException& e) {
    reader.fail("faiss cannot read the index: " + faissMessage(e));
  }
  if (static_cast<uint64_t>(out.index_->d) != h.dim || static_cast<uint64_t>(out.index_->ntotal) != h.rows)
    reader.fail("the header does not match the stored index");
  const std::string wrong = checkIndex(out.index_.get());
  if (!wrong.empty()) reader.fail("inconsistent index: " + wrong);
  return out;
}

}  // namespace anomalens
