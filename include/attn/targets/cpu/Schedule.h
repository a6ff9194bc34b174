// The CPU target: Halide target selection and the schedule of the attention
// algorithm built by compiler/AttnToHalide (the "how", kept apart from the
// "what").
#pragma once

#include "attn/compiler/AttnToHalide.h"

#include <string>

namespace attn::cpu {

/// Parses a target string ("host", "x86-64-linux-avx512", ...). "host"
/// means the features of this machine.
Halide::Target parseTarget(const std::string &spec);

/// Tile sizes of the algorithm for `target` and a kernel's strategy.
/// ATTNC_TILES=QxK in the environment overrides them (for tuning).
TileSizes chooseTiles(const Halide::Target &target, const std::string &strategy,
                      Halide::Type computeType);

/// Applies the CPU schedule: query tiles of alg.tileQ rows, parallel over
/// (batch, head, query tile); key blocks of alg.tileK keys visited in order
/// with an online softmax; QKᵀ and PV accumulated in register tiles.
void schedule(AttentionAlgorithm &alg, const Halide::Target &target);

/// The CPU schedule of the backward (loop structure in Schedule.cpp).
void scheduleBackward(BackwardAlgorithm &bw, const Halide::Target &target);

} // namespace attn::cpu
