// Decoding one (batch, head) stream of a kernel position by position: append
// the key and value of position n, then ask the output for the query at
// position n, which sees keys 0..n (the causal row; an unmasked kernel sees
// the same keys, since no later key exists yet).
//
// The compiler decides how (attn-select-strategy's `decode` attribute, kept
// in the kernel's manifest): `hull` for hard-max kernels with 2-D heads, a
// score c·dot(q, k) with c > 0 and no mask or a causal one — the convex-hull
// key cache answers in O(log n) per step (runtime/HullCache.h); `scan` for
// other kernels whose score is c·dot(q, k) with no mask or a causal one and
// no aux tensors — O(n·D) per step in double; `linear` for kernels
// attn-select-strategy made linear (normalize = linear or none) with a score
// c·dot(q, k), optionally times a decay pow(g, i - j) (g a constant, or
// computed from h: the kernel tabulates it), and no aux tensors, or a score
// dot(φ(q), φ(k)) of channel vectors of their own rows, which the kernel's
// NAME_features entry point computes per step — a recurrent state of
// D × Dv + D (N × Dv + N) doubles,
// O(D·Dv) per step whatever the position. All have this interface, so
// callers never need to know which one they got.
#pragma once

#include "attn/dsl/AST.h"
#include "attn/runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace attn {

class JitKernel;

class Decoder {
public:
  virtual ~Decoder() = default;

  /// The decoder for a compiled kernel; null with `error` set when the
  /// kernel is not decodable (manifest().decode == "none"). Head dims that
  /// the kernel names (D, Dv) rather than fixes must be given. `head` is
  /// the query head of the stream; only a decay computed per head (RetNet's
  /// 1 - 2^(-5 - h)) depends on it.
  /// Linear kernels whose features are channel vectors (elu+1, Performer)
  /// compute them through the kernel, which must outlive the decoder, with
  /// the kernel's aux tensors given in `aux` (a Performer's projection).
  static std::unique_ptr<Decoder> create(const JitKernel &kernel, std::string &error,
                                         int d = 0, int dv = 0, int64_t head = 0,
                                         const std::map<std::string, runtime::HostTensor> &aux = {});
  /// The decoder from its parts: strategy "hull", "scan" or "linear", the score scale
  /// c, the normalization, the head dims of keys (d) and values (dv), and for
  /// "linear" the decay g of a score c·dot(q, k)·pow(g, i - j), in (0, 1].
  static std::unique_ptr<Decoder> create(const std::string &strategy, double scale,
                                         const dsl::Normalize &normalize, int d, int dv,
                                         std::string &error, double decay = 1);

  /// "hull", "scan" or "linear".
  virtual const char *strategy() const = 0;
  int keyDim() const { return d_; }
  int valueDim() const { return dv_; }
  /// Positions appended so far.
  virtual int64_t size() const = 0;

  /// Appends the key (d doubles) and value (dv doubles) of the next position.
  virtual void append(const double *key, const double *value) = 0;
  /// The output (dv doubles) for query q (d doubles) over the keys appended
  /// so far, and its lse when not null: log-sum-exp (softmax, topk), the
  /// maximum score (hardmax), NaN for the others; -inf with out = 0 when
  /// there is no key.
  virtual void query(const double *q, double *out, double *lse = nullptr) const = 0;

  /// One decode step: append(key, value), then query(q, out, lse). The
  /// hull decoder fuses the two (HullCache::step: the searches of both go
  /// down the tree together); results are the same.
  virtual void step(const double *key, const double *value, const double *q, double *out,
                    double *lse = nullptr);
  /// Causal prefill of a whole sequence ([L, d] queries and keys, [L, dv]
  /// values, row-major): for each i, step(k_i, v_i, q_i, out[i]). O(L log L) through the hull.
  void prefill(int64_t L, const double *q, const double *k, const double *v, double *out);

protected:
  Decoder(int d, int dv) : d_(d), dv_(dv) {}
  int d_, dv_;
};

} // namespace attn
