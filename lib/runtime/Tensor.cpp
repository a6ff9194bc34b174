// Host tensors: element sizes, IEEE half / bfloat16 conversions and typed
// element access (see Tensor.h).
#include "attn/runtime/Tensor.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace attn::runtime {

namespace {

uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// `value` rounded to float with round-to-odd: a second rounding of the result
/// to any format with at most 22 significand bits is then correctly rounded
/// (round-to-nearest-even of `value` itself), which a plain double -> float ->
/// half conversion is not.
float doubleToFloatRoundToOdd(double value) {
  float f = static_cast<float>(value);
  if (std::isnan(value) || std::isinf(f) || static_cast<double>(f) == value)
    return f;
  uint32_t u = floatBits(f);
  if ((u & 1u) == 0) {
    // f is the even neighbour of value; the odd one lies on value's other side.
    if (std::fabs(static_cast<double>(f)) > std::fabs(value))
      --u;
    else
      ++u;
  }
  return bitsFloat(u);
}

} // namespace

Status checkBufferShape(const std::string &what, const std::vector<int64_t> &shape) {
  const int64_t limit = INT32_MAX;
  int64_t stride = 1;
  for (int d = int(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] > limit || stride > limit) {
      std::ostringstream os;
      os << "attnc: error: " << what << ": dimension " << d << " has "
         << (shape[d] > limit ? "extent " + std::to_string(shape[d])
                              : "stride " + std::to_string(stride))
         << ", beyond the 2^31 - 1 a kernel buffer can address\n"
         << "hint: split the tensor (e.g. over the batch) into calls of fewer elements";
      return Status::error(os.str());
    }
    if (shape[d] > 0 && stride > INT64_MAX / shape[d])
      stride = INT64_MAX;
    else
      stride *= shape[d];
  }
  return Status::ok();
}

size_t elemSize(ElemType t) {
  switch (t) {
  case ElemType::F32:
  case ElemType::I32:
    return 4;
  case ElemType::F16:
  case ElemType::BF16:
    return 2;
  case ElemType::F64:
  case ElemType::I64:
    return 8;
  case ElemType::Bool:
    return 1;
  }
  return 1;
}

uint16_t floatToBf16(float f) {
  uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep sign and top payload, quiet
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // Round to nearest, ties to even; overflow carries into the exponent and
  // ends at infinity.
  uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

float bf16ToFloat(uint16_t bits) {
  return bitsFloat(static_cast<uint32_t>(bits) << 16);
}

uint16_t floatToF16(float f) {
  uint32_t u = floatBits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    if (a > 0x7f800000u) // NaN: quiet, keep the top payload bits
      return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (a >= 0x477ff000u) // >= 65520 rounds to infinity
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) { // normal half (>= 2^-14)
    uint32_t exp = (a >> 23) - 127 + 15;
    uint32_t mant = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
      ++h;
    return static_cast<uint16_t>(sign | h);
  }
  if (a <= 0x33000000u) // <= 2^-25: rounds to zero (the tie goes to even 0)
    return sign;
  // Subnormal half: units of 2^-24.
  uint32_t exp = a >> 23;
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - exp; // 14..24
  uint32_t h = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u)))
    ++h;
  return static_cast<uint16_t>(sign | h);
}

float f16ToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mant = bits & 0x3ffu;
  if (exp == 0x1f) // inf / NaN
    return bitsFloat(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0)
      return bitsFloat(sign);
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  return bitsFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

HostTensor::HostTensor(ElemType type, std::vector<int64_t> shape)
    : type(type), shape(std::move(shape)) {
  bytes.resize(static_cast<size_t>(numel()) * elemSize(type));
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      return 0;
    n *= d;
  }
  return n;
}

double HostTensor::getDouble(int64_t flat) const {
  switch (type) {
  case ElemType::F32:
    return as<float>()[flat];
  case ElemType::F64:
    return as<double>()[flat];
  case ElemType::F16:
    return f16ToFloat(as<uint16_t>()[flat]);
  case ElemType::BF16:
    return bf16ToFloat(as<uint16_t>()[flat]);
  case ElemType::I32:
    return as<int32_t>()[flat];
  case ElemType::I64:
    return static_cast<double>(as<int64_t>()[flat]);
  case ElemType::Bool:
    return as<uint8_t>()[flat] ? 1.0 : 0.0;
  }
  return 0;
}

int64_t HostTensor::getInt(int64_t flat) const {
  switch (type) {
  case ElemType::I32:
    return as<int32_t>()[flat];
  case ElemType::I64:
    return as<int64_t>()[flat];
  case ElemType::Bool:
    return as<uint8_t>()[flat] ? 1 : 0;
  default: {
    double d = getDouble(flat);
    if (std::isnan(d))
      return 0;
    if (d >= 9223372036854775807.0)
      return std::numeric_limits<int64_t>::max();
    if (d <= -9223372036854775808.0)
      return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(d);
  }
  }
}

void HostTensor::setDouble(int64_t flat, double value) {
  switch (type) {
  case ElemType::F32:
    as<float>()[flat] = static_cast<float>(value);
    return;
  case ElemType::F64:
    as<double>()[flat] = value;
    return;
  case ElemType::F16:
    as<uint16_t>()[flat] = floatToF16(doubleToFloatRoundToOdd(value));
    return;
  case ElemType::BF16:
    as<uint16_t>()[flat] = floatToBf16(doubleToFloatRoundToOdd(value));
    return;
  case ElemType::I32:
    as<int32_t>()[flat] = static_cast<int32_t>(
        std::isnan(value) ? 0
                          : std::fmin(std::fmax(value, -2147483648.0),
                                      2147483647.0));
    return;
  case ElemType::I64:
    as<int64_t>()[flat] =
        std::isnan(value)                  ? 0
        : value >= 9223372036854775807.0   ? std::numeric_limits<int64_t>::max()
        : value <= -9223372036854775808.0  ? std::numeric_limits<int64_t>::min()
                                           : static_cast<int64_t>(value);
    return;
  case ElemType::Bool:
    as<uint8_t>()[flat] = value != 0 ? 1 : 0;
    return;
  }
}

std::string describeTensor(ElemType type, const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << dsl::toString(type) << "[";
  for (size_t d = 0; d < shape.size(); ++d)
    os << (d ? ", " : "") << shape[d];
  os << "]";
  return os.str();
}

std::string HostTensor::describe() const { return describeTensor(type, shape); }

TensorRef::TensorRef(const HostTensor &t)
    : type(t.type), shape(t.shape), strides(t.shape.size()), data(t.data()) {
  int64_t stride = 1;
  for (int d = t.rank() - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= t.shape[d];
  }
}

HostTensor copyToHost(const TensorRef &t) {
  HostTensor h(t.type, t.shape);
  const size_t es = elemSize(t.type);
  const int64_t n = h.numel();
  const int rank = t.rank();
  std::vector<int64_t> index(rank, 0);
  const auto *src = static_cast<const uint8_t *>(t.data);
  uint8_t *dst = h.bytes.data();
  for (int64_t e = 0; e < n; ++e) {
    int64_t offset = 0;
    for (int d = 0; d < rank; ++d)
      offset += index[d] * t.strides[d];
    std::memcpy(dst + e * es, src + offset * static_cast<int64_t>(es), es);
    for (int d = rank - 1; d >= 0 && ++index[d] == t.shape[d]; --d)
      index[d] = 0;
  }
  return h;
}

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (int64_t s : shape)
    n *= s;
  return n;
}

} // namespace attn::runtime
