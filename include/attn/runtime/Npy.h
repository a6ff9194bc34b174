// Reading and writing NumPy `.npy` files (little-endian, C order), the tensor
// format of `attnc run` (LANGUAGE.md §7).
#pragma once

#include "attn/runtime/Tensor.h"

#include <string>

namespace attn::runtime {

/// The `.npy` dtype string of an element type ("<f4", "|b1", ...). bf16 has
/// no NumPy dtype and maps to "<f4", the type it is read from and written as.
const char *npyDescr(ElemType t);

/// Reads a `.npy` file (format 1.0, 2.0 or 3.0). Accepted dtypes: <f4 (F32),
/// <f8 (F64), <f2 (F16), <i4 (I32), <i8 (I64), |b1 (Bool). Any malformed,
/// truncated, big-endian, Fortran-order or otherwise unsupported file gives an
/// error naming the file; nothing is allocated before the data size has been
/// checked against the file size. Bytes after the data are ignored. On success
/// `*npyDescr` (when given) receives the dtype string found in the header.
Status readNpy(const std::string &path, HostTensor &out,
               std::string *npyDescr = nullptr);

/// Reads the file given for tensor `tensorName`, declared with element type
/// `declared`: the file's dtype must be the one LANGUAGE.md §7 pairs with it;
/// a bf16 tensor is read from <f4 and rounded to nearest-even.
Status readNpyAs(const std::string &path, const std::string &tensorName,
                 ElemType declared, HostTensor &out);

/// Writes `t` as a format 1.0 `.npy` file (bf16 as <f4). For a regular file
/// (or a new name) the data goes to a temporary file in the same directory
/// that is renamed over `path` only when complete, so a failure never leaves
/// a partial `path` behind. A symbolic link is followed (its target is
/// replaced, the link kept); a special file such as /dev/null or a FIFO is
/// written in place; a directory is an error.
Status writeNpy(const std::string &path, const HostTensor &t);

} // namespace attn::runtime
