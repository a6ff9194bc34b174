// Edit-distance suggestions for misspelt names.
#include "Suggest.h"

#include <algorithm>

namespace attn::dsl {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

size_t editDistance(const std::string &a, const std::string &b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + cost});
      diag = up;
    }
  }
  return row[b.size()];
}

} // namespace

std::string closestMatch(const std::string &name,
                         const std::vector<std::string> &candidates) {
  if (name.size() > 64)
    return "";
  size_t limit = std::max<size_t>(1, (name.size() + 2) / 3);
  std::string best;
  size_t bestDistance = limit + 1;
  for (const auto &c : candidates) {
    if (c == name || c.size() > 64)
      continue;
    size_t d = editDistance(name, c);
    // A one-letter name is only "close" to the same letter in another case.
    if (d >= std::max(name.size(), c.size()))
      continue;
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return bestDistance <= limit ? best : "";
}

std::string didYouMean(const std::string &name,
                       const std::vector<std::string> &candidates,
                       const std::string &otherwise) {
  std::string best = closestMatch(name, candidates);
  return best.empty() ? otherwise : "did you mean '" + best + "'?";
}

} // namespace attn::dsl
