// "Did you mean ...?" suggestions for misspelt names (internal to dsl/).
#pragma once

#include <string>
#include <vector>

namespace attn::dsl {

/// The candidate closest to `name` by case-insensitive edit distance, or ""
/// when none is close enough to be a plausible typo.
std::string closestMatch(const std::string &name,
                         const std::vector<std::string> &candidates);

/// "did you mean 'x'?" for closestMatch, else `otherwise`.
std::string didYouMean(const std::string &name,
                       const std::vector<std::string> &candidates,
                       const std::string &otherwise = "");

} // namespace attn::dsl
