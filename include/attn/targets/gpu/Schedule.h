// The GPU target family (CUDA and OpenCL share it): tile sizes and the
// Halide GPU schedule of the attention algorithm built by
// compiler/AttnToHalide. Loop structure in Schedule.cpp.
#pragma once

#include "attn/compiler/AttnToHalide.h"

#include <string>

namespace attn::gpu {

/// Threads per block along value channels and keys (a warp).
constexpr int kThreadsX = 32;

/// Tile sizes for a GPU target: query tiles of 16 rows (8 when the value
/// head is wider than 128), key blocks of 32 keys, and register tiles as
/// large as the tile (the mask is classified per (query tile, key block)).
TileSizes chooseTiles(const Halide::Target &target, Halide::Type computeType, int valueDim);

/// Decoding: calls with at most this many queries run the split-key kernel
/// (AttentionAlgorithm::splitDecode), its key blocks cut into at most
/// kMaxSplits runs, one GPU block each, merged exactly.
constexpr int kDecodeRows = 16;
constexpr int kMaxSplits = 64;

/// Empty when `alg` has a GPU schedule, else why not (the driver then
/// compiles the CPU kernel alone and warns with this reason).
std::string unsupported(const AttentionAlgorithm &alg, const Halide::Target &target);

/// Bytes of GPU shared memory one block of `alg` uses for a value head of
/// `valueDim` channels (the accumulator, the score and weight tiles).
int sharedBytes(const AttentionAlgorithm &alg, int valueDim);

/// The most shared memory a block may use: Halide's CUDA runtime launches
/// with the default 48 KB limit.
constexpr int kSharedLimit = 48 * 1024;

/// Applies the GPU schedule: one block per (query tile, head, batch),
/// threads over value channels x rows, the key blocks the mask leaves
/// visited in order with the online softmax.
void schedule(AttentionAlgorithm &alg, const Halide::Target &target);

} // namespace attn::gpu
