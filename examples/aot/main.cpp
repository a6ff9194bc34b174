// Ahead-of-time kernels from C++: two kernels compiled by attnc_add_kernel()
// (see CMakeLists.txt), called on Halide::Runtime::Buffer inputs and checked
// against a naive float64 attention written out below. Exits nonzero when an
// error exceeds the tolerance. See docs/aot.md.
#include "causal.h"           // int causal(q, k, v, out)
#include "packed_documents.h" // int packed_documents(q, k, v, doc, tile_map, window, out, lse)
                              // and packed_documents_tile_map(q, k, v, doc, window, tile_map)

#include "HalideBuffer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using Halide::Runtime::Buffer;

namespace {

// Sizes in C order: [B, H, L, D]. Halide lists dimensions innermost first,
// so a C-order [B, H, L, D] tensor is a Buffer<float>(D, L, H, B), read as
// q(d, i, h, b).
constexpr int B = 2, H = 3, L = 300, D = 64;
constexpr double kTolerance = 1e-4;

Buffer<float> randomTensor(std::mt19937 &rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Buffer<float> t(D, L, H, B);
  t.for_each_value([&](float &x) { x = uniform(rng); });
  return t;
}

/// Naive softmax attention in float64 with score q.k / sqrt(D): for every
/// (b, h, i), a softmax over the keys j with mask(b, i, j). Fills out
/// [B, H, L, D] and lse [B, H, L] (C order).
void naiveAttention(const Buffer<float> &q, const Buffer<float> &k, const Buffer<float> &v,
                    const std::function<bool(int b, int i, int j)> &mask,
                    std::vector<double> &out, std::vector<double> &lse) {
  out.assign(size_t(B) * H * L * D, 0.0);
  lse.assign(size_t(B) * H * L, -std::numeric_limits<double>::infinity());
  std::vector<double> score(L);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < L; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < L; ++j) {
          if (!mask(b, i, j))
            continue;
          double s = 0;
          for (int d = 0; d < D; ++d)
            s += double(q(d, i, h, b)) * double(k(d, j, h, b));
          score[j] = s / std::sqrt(double(D));
          m = std::max(m, score[j]);
        }
        if (m == -std::numeric_limits<double>::infinity())
          continue; // no key takes part: out = 0, lse = -inf
        double sum = 0;
        double *o = &out[((size_t(b) * H + h) * L + i) * D];
        for (int j = 0; j < L; ++j) {
          if (!mask(b, i, j))
            continue;
          double w = std::exp(score[j] - m);
          sum += w;
          for (int d = 0; d < D; ++d)
            o[d] += w * double(v(d, j, h, b));
        }
        for (int d = 0; d < D; ++d)
          o[d] /= sum;
        lse[(size_t(b) * H + h) * L + i] = m + std::log(sum);
      }
}

/// max |out - ref| over a [B, H, L, D] output.
double maxError(const Buffer<float> &out, const std::vector<double> &ref) {
  double err = 0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < L; ++i)
        for (int d = 0; d < D; ++d)
          err = std::max(err, std::abs(out(d, i, h, b) -
                                       ref[((size_t(b) * H + h) * L + i) * D + d]));
  return err;
}

// Halide reports failures through halide_error(), which prints to stderr by
// default; keep the last message to show it ourselves.
std::string lastError;
void recordError(void * /*user_context*/, const char *message) {
  lastError = message;
  while (!lastError.empty() && lastError.back() == '\n')
    lastError.pop_back();
}

bool report(const char *what, double err) {
  bool ok = err <= kTolerance;
  std::printf("%-34s max error %.3g  %s\n", what, err, ok ? "ok" : "TOO LARGE");
  return ok;
}

} // namespace

int main() {
  halide_set_error_handler(recordError);
  std::mt19937 rng(2024);
  Buffer<float> q = randomTensor(rng), k = randomTensor(rng), v = randomTensor(rng);
  bool ok = true;

  // 1. Causal attention: out has q's shape [B, H, L, D].
  {
    Buffer<float> out(D, L, H, B);
    if (int rc = causal(q, k, v, out); rc != 0) {
      std::fprintf(stderr, "causal failed (%d): %s\n", rc, lastError.c_str());
      return 1;
    }
    std::vector<double> ref, refLse;
    naiveAttention(q, k, v, [](int, int i, int j) { return j <= i; }, ref, refLse);
    ok &= report("causal: out", maxError(out, ref));
  }

  // 2. Packed documents: an aux tensor doc [B, L] of document ids (random
  //    lengths of 1 to 120 tokens), a param `window`, and the lse output.
  {
    Buffer<int32_t> doc(L, B); // C order [B, L]
    std::uniform_int_distribution<int> docLength(1, 120);
    for (int b = 0; b < B; ++b)
      for (int i = 0, id = 0, left = docLength(rng); i < L; ++i, --left) {
        if (left == 0) {
          ++id;
          left = docLength(rng);
        }
        doc(i, b) = id;
      }
    const int32_t window = 100;

    // Aux indices must lie inside the aux tensor: packed_documents_check_indices
    // returns, for every index expression c (here doc[b, i] and doc[b, j],
    // each with its index into B and into L; the order is attnc's, see
    // packed_documents.json and docs/aot.md), its minimum (e = 0) and
    // maximum (e = 1) value (f = 0) and where it is taken (f = 1..4: b, h, i,
    // j). `exact` false checks each index over its whole domain (cheap);
    // true returns only its out-of-range values where the kernel uses them,
    // which matters only when the first finds an index out of range.
    const int extentOfCheck[] = {B, L, B, L};
    const int nChecks = 4;
    Buffer<int64_t> bounds(5, 2, nChecks); // C order [nChecks][2][5]
    if (int rc = packed_documents_check_indices(q, k, v, doc, window, false, bounds); rc != 0) {
      std::fprintf(stderr, "packed_documents_check_indices failed (%d): %s\n", rc,
                   lastError.c_str());
      return 1;
    }
    for (int c = 0; c < nChecks; ++c)
      if (bounds(0, 0, c) < 0 || bounds(0, 1, c) >= extentOfCheck[c]) {
        std::fprintf(stderr, "aux index %d takes values in [%lld, %lld], outside [0, %d)\n", c,
                     (long long)bounds(0, 0, c), (long long)bounds(0, 1, c), extentOfCheck[c]);
        return 1;
      }

    // A data-dependent mask comes with its tile map: which key blocks may
    // take part for each query tile (uint8 [B][H][query tiles][key blocks],
    // the tile sizes are in packed_documents.json). Build it once per doc
    // tensor; the kernel then skips every block the map rules out.
    const int tileQ = 64, tileK = 128;
    Buffer<uint8_t> tileMap((L + tileK - 1) / tileK, (L + tileQ - 1) / tileQ, H, B);
    if (int rc = packed_documents_tile_map(q, k, v, doc, window, tileMap); rc != 0) {
      std::fprintf(stderr, "packed_documents_tile_map failed (%d): %s\n", rc, lastError.c_str());
      return 1;
    }

    Buffer<float> out(D, L, H, B), lse(L, H, B);
    if (int rc = packed_documents(q, k, v, doc, tileMap, window, out, lse); rc != 0) {
      std::fprintf(stderr, "packed_documents failed (%d): %s\n", rc, lastError.c_str());
      return 1;
    }
    std::vector<double> ref, refLse;
    naiveAttention(
        q, k, v,
        [&](int b, int i, int j) { return doc(i, b) == doc(j, b) && j <= i && i - j < window; },
        ref, refLse);
    ok &= report("packed_documents: out", maxError(out, ref));
    double lseErr = 0;
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < L; ++i)
          lseErr = std::max(lseErr, std::abs(lse(i, h, b) - refLse[(size_t(b) * H + h) * L + i]));
    ok &= report("packed_documents: lse", lseErr);
  }

  // 3. A bad argument is a nonzero return code and a message, never a crash:
  //    here q has the wrong element type.
  {
    Buffer<double> q64(D, L, H, B);
    q64.fill(0.0);
    Buffer<float> out(D, L, H, B);
    lastError.clear();
    int rc = causal(q64, k, v, out);
    std::printf("causal with f64 q: returned %d (%s)\n", rc,
                lastError.empty() ? "no message" : lastError.c_str());
    ok &= rc != 0;
  }

  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
