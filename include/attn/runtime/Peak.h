// The machine's FP32 peak, measured: what "% of peak" figures are read
// against (DESIGN.md, "Performance: how it is measured").
#pragma once

#include <string>

namespace attn::runtime {

/// The cache directory of compiled kernels (and of the measured peak):
/// $ATTNC_CACHE_DIR, else $XDG_CACHE_HOME/attnc, else ~/.cache/attnc, else a
/// folder attnc-cache-UID in the temp directory.
std::string defaultCacheDir();

/// FP32 FMA throughput in GFLOP/s with one thread per core, each running 12
/// independent FMA chains (512-bit where the CPU has AVX-512F, else 256-bit
/// FMA) for `iterations` steps. `wide` (when not null) says which.
double measurePeakGflops(long iterations, bool *wide = nullptr);

/// The peak "% of peak" uses: $ATTNC_PEAK_GFLOPS when set to a positive
/// number; else the figure measured once on this CPU and cached as
/// fp32-peak.txt in defaultCacheDir(), keyed by the CPU's model name and
/// thread count (a different CPU, or a damaged file, is measured anew).
/// Measuring (the best of three short runs) takes about half a second; the file is written only into an
/// existing directory owned by the user, by atomic rename.
double peakGflops();

} // namespace attn::runtime
