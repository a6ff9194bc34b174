// Decoders (see Decoder.h): the hull-backed one for hard-max with 2-D heads,
// and a scan over the cached keys for the other decodable kernels.
#include "attn/jit/Decoder.h"

#include "attn/runtime/HullCache.h"
#include "attn/jit/Jit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace attn {

using runtime::HostTensor;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

class HullDecoder final : public Decoder {
public:
  HullDecoder(double scale, dsl::TieRule ties, int dv)
      : Decoder(2, dv), scale_(scale), ties_(ties), cache_(dv) {}
  const char *strategy() const override { return "hull"; }
  int64_t size() const override { return (int64_t)cache_.size(); }
  void append(const double *key, const double *value) override {
    cache_.append(key[0], key[1], value);
  }
  void query(const double *q, double *out, double *lse) const override {
    // c > 0: the keys maximizing c q.k are those maximizing q.k.
    double m = -kInf;
    cache_.query(q[0], q[1], ties_, out, &m);
    if (lse)
      *lse = cache_.empty() ? -kInf : scale_ * m;
  }
  void step(const double *key, const double *value, const double *q, double *out,
            double *lse) override {
    double m = -kInf;
    cache_.step(key[0], key[1], value, q[0], q[1], ties_, out, &m);
    if (lse)
      *lse = scale_ * m;
  }

private:
  double scale_;
  dsl::TieRule ties_;
  runtime::HullCache cache_;
};

/// Linear attention (attn-select-strategy's `linear` with score c·dot(q, k),
/// optionally times pow(g, i - j)): the state Σ g^(n-1-j) k vᵀ (d × dv) and
/// Σ g^(n-1-j) k over the n positions so far, constant in size; out = c q·S
/// [/ c q·z], 0 where the normalizer is 0.
class LinearDecoder final : public Decoder {
public:
  LinearDecoder(double scale, double decay, bool normalized, int d, int dv)
      : Decoder(d, dv), scale_(scale), decay_(decay), normalized_(normalized),
        state_(size_t(d) * dv, 0.0), norm_(size_t(d), 0.0) {}
  const char *strategy() const override { return "linear"; }
  int64_t size() const override { return n_; }
  void append(const double *key, const double *value) override {
    if (decay_ != 1) {
      for (double &s : state_)
        s *= decay_;
      for (double &z : norm_)
        z *= decay_;
    }
    for (int a = 0; a < d_; ++a) {
      norm_[a] += key[a];
      double *row = &state_[size_t(a) * dv_];
      for (int c = 0; c < dv_; ++c)
        row[c] += key[a] * value[c];
    }
    ++n_;
  }
  void query(const double *q, double *out, double *lse) const override {
    std::fill(out, out + dv_, 0.0);
    if (lse)
      *lse = n_ ? std::nan("") : -kInf;
    double den = 0;
    for (int a = 0; a < d_; ++a) {
      double w = scale_ * q[a];
      den += w * norm_[a];
      const double *row = &state_[size_t(a) * dv_];
      for (int c = 0; c < dv_; ++c)
        out[c] += w * row[c];
    }
    if (normalized_)
      for (int c = 0; c < dv_; ++c)
        out[c] = den != 0 ? out[c] / den : 0.0;
  }

private:
  double scale_, decay_;
  bool normalized_;
  std::vector<double> state_, norm_;
  int64_t n_ = 0;
};

/// A linear kernel whose features are channel vectors of their own row
/// (elu+1, Performer): the kernel's NAME_features entry point maps each raw
/// q and k row to φ(q) (the score's constant included) and φ(k), and a
/// LinearDecoder over the features keeps the state (N × dv + N).
class FeatureDecoder final : public Decoder {
public:
  FeatureDecoder(const JitKernel &kernel, JitKernel::FeatureCall fc, double decay, bool normalized,
                 int d, int dv)
      : Decoder(d, dv), kernel_(kernel), fc_(std::move(fc)),
        state_(1.0, decay, normalized, fc_.length, dv), zeros_(size_t(d), 0.0) {}
  const char *strategy() const override { return "linear"; }
  int64_t size() const override { return state_.size(); }
  void append(const double *key, const double *value) override {
    state_.append(featuresOf(zeros_.data(), key).second, value);
  }
  void query(const double *q, double *out, double *lse) const override {
    state_.query(featuresOf(q, zeros_.data()).first, out, lse);
  }
  void step(const double *key, const double *value, const double *q, double *out,
            double *lse) override {
    auto [fq, fk] = featuresOf(q, key); // one call for both rows
    state_.append(fk, value);
    state_.query(fq, out, lse);
  }

private:
  /// φ(q), φ(k); NaN features when the kernel fails (it cannot for the
  /// checked aux tensors: their indices were checked by prepareFeatures).
  std::pair<const double *, const double *> featuresOf(const double *q, const double *k) const {
    if (!kernel_.features(fc_, q, k)) {
      for (HostTensor *t : {&fc_.fq, &fc_.fk})
        for (int64_t e = 0; e < t->numel(); ++e)
          t->setDouble(e, std::nan(""));
    }
    return {fc_.fq.as<double>(), fc_.fk.as<double>()};
  }
  const JitKernel &kernel_;
  mutable JitKernel::FeatureCall fc_;
  LinearDecoder state_;
  std::vector<double> zeros_;
};

class ScanDecoder final : public Decoder {
public:
  ScanDecoder(double scale, const dsl::Normalize &norm, int d, int dv)
      : Decoder(d, dv), scale_(scale), norm_(norm) {}
  const char *strategy() const override { return "scan"; }
  int64_t size() const override { return (int64_t)keys_.size() / d_; }
  void append(const double *key, const double *value) override {
    keys_.insert(keys_.end(), key, key + d_);
    values_.insert(values_.end(), value, value + dv_);
  }

  void query(const double *q, double *out, double *lse) const override {
    int64_t n = size();
    std::fill(out, out + dv_, 0.0);
    double rowLse = std::nan("");
    std::vector<double> s(n);
    for (int64_t j = 0; j < n; ++j) {
      const double *k = &keys_[j * d_];
      s[j] = scale_ * std::inner_product(q, q + d_, k, 0.0);
    }
    auto addValue = [&](int64_t j, double w) {
      for (int c = 0; c < dv_; ++c)
        out[c] += w * values_[j * dv_ + c];
    };
    switch (norm_.kind) {
    case dsl::NormKind::Softmax:
    case dsl::NormKind::TopK: {
      std::vector<int64_t> keep(n);
      std::iota(keep.begin(), keep.end(), 0);
      if (norm_.kind == dsl::NormKind::TopK && (int64_t)norm_.k < n) {
        // The K best by score, a later key first on a tie.
        std::nth_element(keep.begin(), keep.begin() + norm_.k, keep.end(), [&](int64_t a, int64_t b) {
          return s[a] != s[b] ? s[a] > s[b] : a > b;
        });
        keep.resize(norm_.k);
      }
      double m = -kInf;
      for (int64_t j : keep)
        m = std::max(m, s[j]);
      double sum = 0;
      for (int64_t j : keep) {
        double w = std::exp(s[j] - m);
        sum += w;
        addValue(j, w);
      }
      if (sum > 0)
        for (int c = 0; c < dv_; ++c)
          out[c] /= sum;
      rowLse = n ? m + std::log(sum) : -kInf;
      break;
    }
    case dsl::NormKind::Hardmax: {
      double m = -kInf;
      for (int64_t j = 0; j < n; ++j)
        m = std::max(m, s[j]);
      int64_t count = 0, first = -1, last = -1;
      for (int64_t j = 0; j < n; ++j)
        if (s[j] == m) {
          ++count;
          last = j;
          if (first < 0)
            first = j;
          if (norm_.ties == dsl::TieRule::Average)
            addValue(j, 1.0);
        }
      if (count) {
        if (norm_.ties == dsl::TieRule::Average)
          for (int c = 0; c < dv_; ++c)
            out[c] /= (double)count;
        else
          addValue(norm_.ties == dsl::TieRule::Latest ? last : first, 1.0);
      }
      rowLse = m;
      break;
    }
    case dsl::NormKind::Sigmoid:
      for (int64_t j = 0; j < n; ++j)
        addValue(j, 1.0 / (1.0 + std::exp(-s[j])));
      break;
    case dsl::NormKind::Relu:
      for (int64_t j = 0; j < n; ++j)
        addValue(j, std::max(s[j], 0.0));
      break;
    case dsl::NormKind::None:
      for (int64_t j = 0; j < n; ++j)
        addValue(j, s[j]);
      break;
    case dsl::NormKind::Linear: {
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        addValue(j, s[j]);
        sum += s[j];
      }
      for (int c = 0; c < dv_; ++c)
        out[c] = sum == 0 ? 0.0 : out[c] / sum;
      break;
    }
    }
    if (lse)
      *lse = n ? rowLse : -kInf;
  }

private:
  double scale_;
  dsl::Normalize norm_;
  std::vector<double> keys_, values_;
};

} // namespace

std::unique_ptr<Decoder> Decoder::create(const std::string &strategy, double scale,
                                         const dsl::Normalize &normalize, int d, int dv,
                                         std::string &error, double decay) {
  if (d < 1 || dv < 1) {
    error = "attnc: error: a decoder needs head dims of at least 1";
    return nullptr;
  }
  if (strategy == "hull") {
    if (d != 2 || normalize.kind != dsl::NormKind::Hardmax || !(scale > 0)) {
      error = "attnc: error: the hull decoder needs hard-max attention with 2-D heads "
              "and a positive score scale";
      return nullptr;
    }
    return std::make_unique<HullDecoder>(scale, normalize.ties, dv);
  }
  if (strategy == "scan")
    return std::make_unique<ScanDecoder>(scale, normalize, d, dv);
  if (strategy == "linear") {
    if (normalize.kind != dsl::NormKind::Linear && normalize.kind != dsl::NormKind::None) {
      error = "attnc: error: the linear decoder needs normalize = linear or none";
      return nullptr;
    }
    if (!(decay > 0 && decay <= 1)) {
      error = "attnc: error: the linear decoder's decay must be in (0, 1]";
      return nullptr;
    }
    return std::make_unique<LinearDecoder>(scale, decay, normalize.kind == dsl::NormKind::Linear,
                                           d, dv);
  }
  error = "attnc: error: unknown decode strategy '" + strategy + "'";
  return nullptr;
}

std::unique_ptr<Decoder> Decoder::create(const JitKernel &kernel, std::string &error, int d,
                                         int dv, int64_t head,
                                         const std::map<std::string, HostTensor> &aux) {
  const KernelManifest &m = kernel.manifest();
  const dsl::Kernel &k = kernel.kernel();
  if (m.decode != "hull" && m.decode != "scan" && m.decode != "linear") {
    error = "attnc: error: kernel '" + k.name +
            "' cannot be decoded position by position: that needs no mask or a causal one "
            "(j <= i) and a score c * dot(q, k) without aux tensors, or a linear kernel "
            "whose features and decay depend on their own row and head alone "
            "(docs/language.md)";
    return nullptr;
  }
  const dsl::Dim &qd = k.q->dims[3], &vd = k.v->dims[3];
  if (qd.isLiteral())
    d = (int)qd.value;
  if (vd.isLiteral())
    dv = (int)vd.value;
  if (d < 1 || dv < 1) {
    error = "attnc: error: kernel '" + k.name +
            "' names its head dims; give them to Decoder::create";
    return nullptr;
  }
  double decay = m.decodeDecay;
  if (m.hasDecayTable) {
    if (runtime::Status s = kernel.decayOfHead(head, decay); !s) {
      error = s.message();
      return nullptr;
    }
    if (!(decay > 0 && decay <= 1)) {
      error = "attnc: error: kernel '" + k.name + "': the decay of head " + std::to_string(head) +
              " is " + std::to_string(decay) + ", not in (0, 1]";
      return nullptr;
    }
  }
  if (m.hasFeatures) {
    JitKernel::FeatureCall fc;
    if (runtime::Status s = kernel.prepareFeatures(aux, d, dv, fc); !s) {
      error = s.message();
      return nullptr;
    }
    return std::make_unique<FeatureDecoder>(kernel, std::move(fc), decay,
                                            k.normalize.kind == dsl::NormKind::Linear, d, dv);
  }
  if (!aux.empty()) {
    error = "attnc: error: kernel '" + k.name + "' decodes without aux tensors";
    return nullptr;
  }
  return create(m.decode, m.decodeScale, k.normalize, d, dv, error, decay);
}

void Decoder::step(const double *key, const double *value, const double *q, double *out,
                   double *lse) {
  append(key, value);
  query(q, out, lse);
}

void Decoder::prefill(int64_t L, const double *q, const double *k, const double *v, double *out) {
  for (int64_t i = 0; i < L; ++i)
    step(k + i * d_, v + i * dv_, q + i * d_, out + i * dv_, nullptr);
}

} // namespace attn
