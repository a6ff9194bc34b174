// Host tensors: an owning, typed, C-order buffer with a shape. Used for
// `.npy` I/O, argument checking, the float64 reference and the JIT API; a
// kernel sees them through halide_buffer_t views (see Kernel.h).
#pragma once

#include "attn/dsl/AST.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace attn::runtime {

using dsl::ElemType;

/// Allocator for std::vector whose storage starts on an `Alignment`-byte
/// boundary (tensor data handed to vectorised kernels).
template <typename T, size_t Alignment = 64> struct AlignedAllocator {
  static_assert(Alignment >= alignof(T) && (Alignment & (Alignment - 1)) == 0,
                "alignment must be a power of two, at least alignof(T)");
  using value_type = T;
  template <typename U> struct rebind {
    using other = AlignedAllocator<U, Alignment>;
  };

  AlignedAllocator() noexcept = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U, Alignment> &) noexcept {}

  T *allocate(size_t n) {
    if (n == 0)
      n = 1;
    if (n > static_cast<size_t>(-1) / sizeof(T) - Alignment)
      throw std::bad_array_new_length();
    size_t bytes = (n * sizeof(T) + Alignment - 1) / Alignment * Alignment;
    void *p = std::aligned_alloc(Alignment, bytes);
    if (!p)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  void deallocate(T *p, size_t) noexcept { std::free(p); }

  template <typename U>
  bool operator==(const AlignedAllocator<U, Alignment> &) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const AlignedAllocator<U, Alignment> &) const noexcept {
    return false;
  }
};

/// Byte storage of host tensors, 64-byte aligned.
using AlignedBytes = std::vector<uint8_t, AlignedAllocator<uint8_t, 64>>;

/// Bytes per element in memory (bf16 and f16 are stored as 16-bit patterns).
size_t elemSize(ElemType t);

/// IEEE-754 conversions with round-to-nearest-even.
uint16_t floatToBf16(float f);
float bf16ToFloat(uint16_t bits);
uint16_t floatToF16(float f);
float f16ToFloat(uint16_t bits);

/// Success, or an error message for the user.
class Status {
public:
  static Status ok() { return Status(); }
  static Status error(std::string message) {
    Status s;
    s.message_ = std::move(message);
    s.failed_ = true;
    return s;
  }
  bool isOk() const { return !failed_; }
  explicit operator bool() const { return !failed_; }
  const std::string &message() const { return message_; }

private:
  std::string message_;
  bool failed_ = false;
};

/// Kernel buffers (halide_buffer_t) hold int32 extents and strides: an
/// error naming `what` and the dimension (C order) when an extent or a
/// stride of `shape` exceeds 2^31 - 1.
Status checkBufferShape(const std::string &what, const std::vector<int64_t> &shape);

struct HostTensor {
  ElemType type = ElemType::F32;
  std::vector<int64_t> shape;
  /// 64-byte aligned storage of numel() * elemSize(type) bytes.
  AlignedBytes bytes;

  HostTensor() = default;
  HostTensor(ElemType type, std::vector<int64_t> shape);

  int64_t numel() const;
  int rank() const { return static_cast<int>(shape.size()); }
  void *data() { return bytes.data(); }
  const void *data() const { return bytes.data(); }
  template <typename T> T *as() { return reinterpret_cast<T *>(bytes.data()); }
  template <typename T> const T *as() const {
    return reinterpret_cast<const T *>(bytes.data());
  }

  /// Element at flat C-order index, converted to double (bool -> 0/1).
  double getDouble(int64_t flat) const;
  /// Element at flat index, converted to int64 (floats truncated).
  int64_t getInt(int64_t flat) const;
  /// Stores `value` converted to the element type (rounded to nearest-even
  /// for bf16/f16).
  void setDouble(int64_t flat, double value);

  /// "f32[1, 8, 2048, 128]"
  std::string describe() const;
};

/// "f32[1, 8, 2048, 128]"
std::string describeTensor(ElemType type, const std::vector<int64_t> &shape);

/// A tensor someone else owns (a NumPy array, a PyTorch tensor, a
/// HostTensor): element type, shape, strides in elements (one per dimension,
/// C order of the dimensions; any sign, 0 for broadcast dimensions) and the
/// address of element [0, ..., 0]. Kernels read it in place: a view is never
/// copied by the runtime.
struct TensorRef {
  ElemType type = ElemType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  const void *data = nullptr;

  TensorRef() = default;
  /// The dense C-order view of a host tensor.
  TensorRef(const HostTensor &t);

  int rank() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  std::string describe() const { return describeTensor(type, shape); }
};

/// A dense C-order copy of a view (for the reference and other host code
/// that reads tensors by flat index).
HostTensor copyToHost(const TensorRef &t);

} // namespace attn::runtime
