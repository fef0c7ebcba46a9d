#include "worker/engine/methods/selection.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <vector>

namespace shears::engine {
namespace {

// An unsigned image of a float that orders as the float does: the sign bit flipped for positive
// numbers, every bit for negative ones. Both zeros map to one key, as they compare equal.
inline uint32_t Key(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) == 0) return 0x80000000u;
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The k-th lowest key (1 <= k <= count) and how many entries equal to it the k lowest hold, found
// digit by digit from the top (11, 11 and 10 bits): each round counts the entries that share the
// digits found so far. `count_digits(mask, prefix, shift, histogram)` adds to histogram[d] the
// entries with (key & mask) == prefix and digit d at `shift`.
struct Threshold {
  uint32_t key = 0;
  int64_t room = 0;
};
constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;
using Histogram = std::array<int64_t, kBins>;

template <typename CountDigits>
Threshold KthKey(int64_t k, const CountDigits& count_digits) {
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = k;  // the rank sought among the entries that share the prefix
  for (int shift : {21, 10, 0}) {
    const int bits = shift == 0 ? 10 : kDigitBits;
    Histogram histogram{};
    count_digits(mask, prefix, shift, histogram);
    int digit = 0;
    while (remaining > histogram[digit]) remaining -= histogram[digit++];
    prefix |= uint32_t(digit) << shift;
    mask |= uint32_t((1u << bits) - 1) << shift;
  }
  return {prefix, remaining};
}

[[gnu::noinline]] void CountDigits(const float* __restrict x, int64_t n, uint32_t mask, uint32_t prefix, int shift,
                                   Histogram& histogram) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = Key(x[i]);
    if ((key & mask) == prefix) ++histogram[(key >> shift) & (kBins - 1)];
  }
}

// The loops over every entry are functions of their own (never inlined into the parallel
// lambdas), so that their counters stay in registers: inlined, GCC kept them on the stack and a
// pass ran ten times slower.

// Marks the entries below the threshold and the first `room` equal to it; returns how many equal
// ones it marked.
[[gnu::noinline]] int64_t MarkBelow(const float* __restrict x, int64_t n, Threshold t, bool* __restrict out) {
  int64_t taken = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = Key(x[i]);
    const bool tie = key == t.key && taken < t.room;
    taken += tie;
    out[i] = key < t.key || tie;
  }
  return taken;
}

// Rows of a few entries (N:M groups): an entry is among the k lowest when fewer than k entries
// come before it in the stable order.
void SelectInTinyRows(const float* x, int64_t rows, int64_t cols, int64_t k, bool* out) {
  at::parallel_for(0, rows, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * cols;
      for (int64_t i = 0; i < cols; ++i) {
        int64_t before = 0;
        for (int64_t j = 0; j < cols; ++j) before += Key(row[j]) < Key(row[i]) || (j < i && Key(row[j]) == Key(row[i]));
        out[r * cols + i] = before < k;
      }
    }
  });
}

// Many rows: each thread selects whole rows.
void SelectInRows(const float* x, int64_t rows, int64_t cols, int64_t k, bool* out) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * cols;
      const Threshold t = KthKey(k, [&](uint32_t mask, uint32_t prefix, int shift, Histogram& h) {
        CountDigits(row, cols, mask, prefix, shift, h);
      });
      MarkBelow(row, cols, t, out + r * cols);
    }
  });
}

// f(c, from, to) for each chunk c of `chunks` equal parts [from, to) of [0, n), in parallel.
template <typename F>
void ForEachChunk(int64_t n, int64_t chunks, const F& f) {
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) f(c, n * c / chunks, n * (c + 1) / chunks);
  });
}

// Of `room` entries equal to the threshold, taken in index order, how many fall in each chunk,
// given how many each chunk holds (`ties`).
std::vector<int64_t> RoomPerChunk(int64_t room, const std::vector<int64_t>& ties) {
  std::vector<int64_t> out(ties.size());
  for (size_t c = 0; c < ties.size(); ++c) {
    out[c] = std::min(room, ties[c]);
    room -= out[c];
  }
  return out;
}

// Marks x[0, n) of one long row in chunks, in parallel: below the threshold, and of the entries
// equal to it the first `room`, given how many each chunk holds (`ties`).
void MarkChunks(const float* x, int64_t n, Threshold t, const std::vector<int64_t>& ties, bool* out) {
  const std::vector<int64_t> room = RoomPerChunk(t.room, ties);
  ForEachChunk(n, static_cast<int64_t>(ties.size()), [&](int64_t c, int64_t from, int64_t to) {
    MarkBelow(x + from, to - from, {t.key, room[c]}, out + from);
  });
}

int64_t ChunksFor(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n >> 16)); }

// One long row, exactly, digit by digit: three counting passes over all of it, then the marking.
void SelectInOneRowByDigits(const float* x, int64_t n, int64_t k, bool* out) {
  const int64_t chunks = ChunksFor(n);
  std::vector<Histogram> partial(chunks);
  const Threshold t = KthKey(k, [&](uint32_t mask, uint32_t prefix, int shift, Histogram& h) {
    ForEachChunk(n, chunks, [&](int64_t c, int64_t from, int64_t to) {
      partial[c].fill(0);
      CountDigits(x + from, to - from, mask, prefix, shift, partial[c]);
    });
    for (const auto& p : partial) {
      for (int d = 0; d < kBins; ++d) h[d] += p[d];
    }
  });
  // The last round counted, chunk by chunk, the entries that share every digit of the threshold:
  // its ties.
  std::vector<int64_t> ties(chunks);
  for (int64_t c = 0; c < chunks; ++c) ties[c] = partial[c][t.key & (kBins - 1)];
  MarkChunks(x, n, t, ties, out);
}

// Counts the keys of x[0, n) below `lo` into `below` and copies those in [lo, hi] to `out`
// (room for limit + 1); returns how many it copied, or -1 when they are more than `limit`.
[[gnu::noinline]] int64_t Gather(const float* __restrict x, int64_t n, uint32_t lo, uint32_t hi,
                                 uint32_t* __restrict out, int64_t limit, int64_t& below) {
  int64_t count = 0, kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = Key(x[i]);
    count += key < lo;
    out[kept] = key;
    kept += key >= lo && key <= hi;
    if (kept > limit) return -1;
  }
  below = count;
  return kept;
}

// One long row (a whole matrix) in two passes: a sample of 2^16 keys brackets the k-th; one pass
// counts the entries below the bracket and gathers those in it, chunk by chunk; the k-th is found
// among the gathered (a few percent of the row), and a second pass marks. When the bracket misses
// (never for a sample this size short of pathological data) or gathers too much (a sea of equal
// scores), the digit-by-digit selection answers instead: the result is exact either way.
void SelectInOneRow(const float* x, int64_t n, int64_t k, bool* out) {
  constexpr int64_t kSample = 1 << 16, kMargin = 1024;  // the margin is ~8 standard deviations of a rank
  if (n < 16 * kSample) return SelectInOneRowByDigits(x, n, k, out);
  std::vector<uint32_t> sample(kSample);
  for (int64_t i = 0; i < kSample; ++i) sample[i] = Key(x[i * (n / kSample)]);
  std::sort(sample.begin(), sample.end());
  const int64_t rank = static_cast<int64_t>(double(k) / double(n) * kSample);
  const uint32_t lo = rank - kMargin <= 0 ? 0u : sample[rank - kMargin];
  const uint32_t hi = rank + kMargin >= kSample ? ~0u : sample[rank + kMargin];

  const int64_t chunks = ChunksFor(n), most = n / 16;
  std::vector<int64_t> below(chunks, 0);
  std::vector<std::vector<uint32_t>> gathered(chunks);
  std::atomic<bool> too_many{false};
  ForEachChunk(n, chunks, [&](int64_t c, int64_t from, int64_t to) {
    gathered[c].resize(static_cast<size_t>(most / chunks + 1));
    const int64_t kept = Gather(x + from, to - from, lo, hi, gathered[c].data(), most / chunks, below[c]);
    if (kept < 0) too_many = true;
    gathered[c].resize(std::max<int64_t>(kept, 0));
  });
  int64_t under = 0, inside = 0;
  for (int64_t c = 0; c < chunks; ++c) under += below[c], inside += gathered[c].size();
  if (too_many || k <= under || k > under + inside) return SelectInOneRowByDigits(x, n, k, out);

  std::vector<uint32_t> all;
  all.reserve(inside);
  for (const auto& g : gathered) all.insert(all.end(), g.begin(), g.end());
  std::nth_element(all.begin(), all.begin() + (k - under - 1), all.end());
  Threshold t{all[k - under - 1], 0};
  const int64_t less = under + std::count_if(all.begin(), all.end(), [&](uint32_t key) { return key < t.key; });
  t.room = k - less;
  std::vector<int64_t> ties(chunks);
  for (int64_t c = 0; c < chunks; ++c) ties[c] = std::count(gathered[c].begin(), gathered[c].end(), t.key);
  MarkChunks(x, n, t, ties, out);
}

// Off the CPU: the k-th value by kthvalue, then the same rule for ties with a running count.
torch::Tensor LowestPerRowOnDevice(const torch::Tensor& scores, int64_t k) {
  auto s = scores.to(torch::kFloat32) + 0.0;  // + 0.0 turns -0.0 into 0.0
  auto kth = std::get<0>(s.kthvalue(k, /*dim=*/1, /*keepdim=*/true));
  auto below = s < kth, equal = s == kth;
  auto room = k - below.sum(1, /*keepdim=*/true);
  return below | (equal & (equal.cumsum(1) <= room));
}

// Half precision (BF16, F16) stores sign and magnitude apart: the low 15 bits order the
// magnitudes as the values do, so one histogram of them ranks every entry exactly.
constexpr uint16_t kMagnitudeBits = 0x7fff;
constexpr int kMagnitudes = 1 << 15;

[[gnu::noinline]] void CountMagnitudes(const uint16_t* __restrict x, int64_t n, int64_t* __restrict histogram) {
  for (int64_t i = 0; i < n; ++i) ++histogram[x[i] & kMagnitudeBits];
}

// Zeros the entries of magnitude below `key` and the first `room` of magnitude `key`.
[[gnu::noinline]] void ZeroBelow(uint16_t* __restrict x, int64_t n, uint16_t key, int64_t room) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t magnitude = x[i] & kMagnitudeBits;
    const bool tie = magnitude == key && room > 0;
    room -= tie;
    if (magnitude < key || tie) x[i] = 0;
  }
}

}  // namespace

bool ZeroSmallestMagnitudes(torch::Tensor& weight, int64_t k) {
  const auto dtype = weight.scalar_type();
  if (!weight.is_cpu() || !weight.is_contiguous() || (dtype != torch::kBFloat16 && dtype != torch::kHalf)) return false;
  const int64_t n = weight.numel();
  if (k <= 0) return true;
  if (k >= n) {
    weight.zero_();
    return true;
  }
  auto* x = static_cast<uint16_t*>(weight.data_ptr());
  const int64_t chunks = ChunksFor(n);
  std::vector<std::vector<int64_t>> counts(chunks, std::vector<int64_t>(kMagnitudes, 0));
  ForEachChunk(n, chunks,
               [&](int64_t c, int64_t from, int64_t to) { CountMagnitudes(x + from, to - from, counts[c].data()); });
  // The k-th smallest magnitude, and how many of the entries equal to it go, chunk by chunk in
  // index order.
  int64_t remaining = k;
  int key = 0;
  for (;; ++key) {
    int64_t equal = 0;
    for (const auto& c : counts) equal += c[key];
    if (remaining <= equal) break;
    remaining -= equal;
  }
  std::vector<int64_t> ties(chunks);
  for (int64_t c = 0; c < chunks; ++c) ties[c] = counts[c][key];
  const std::vector<int64_t> room = RoomPerChunk(remaining, ties);
  ForEachChunk(n, chunks, [&](int64_t c, int64_t from, int64_t to) {
    ZeroBelow(x + from, to - from, static_cast<uint16_t>(key), room[c]);
  });
  return true;
}

torch::Tensor LowestPerRow(const torch::Tensor& scores, int64_t k) {
  const int64_t rows = scores.size(0), cols = scores.size(1);
  if (k <= 0) return torch::zeros(scores.sizes(), scores.options().dtype(torch::kBool));
  if (k >= cols) return torch::ones(scores.sizes(), scores.options().dtype(torch::kBool));
  if (!scores.is_cpu()) return LowestPerRowOnDevice(scores, k);
  const torch::Tensor s = scores.to(torch::kFloat32).contiguous();
  auto mask = torch::empty(scores.sizes(), scores.options().dtype(torch::kBool));
  const float* x = s.data_ptr<float>();
  bool* out = mask.data_ptr<bool>();
  if (cols <= 16) {
    SelectInTinyRows(x, rows, cols, k, out);
  } else if (rows == 1) {
    SelectInOneRow(x, cols, k, out);
  } else {
    SelectInRows(x, rows, cols, k, out);
  }
  return mask;
}

}  // namespace shears::engine
