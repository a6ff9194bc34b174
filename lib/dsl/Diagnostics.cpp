// Collection and clang-style rendering of `.attn` diagnostics: the location,
// the offending source line and a caret line under the range.
#include "attn/dsl/Diagnostics.h"

#include <algorithm>

namespace attn::dsl {

namespace {

/// Length of the well-formed UTF-8 sequence starting at s[i], or 0.
size_t utf8Length(const std::string &s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (c >= 0xF5 || n == 0 || i + n > s.size())
    return 0;
  for (size_t k = 1; k < n; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80)
      return 0;
  }
  return n;
}

/// A source line split into what one terminal column shows: a UTF-8
/// character, a tab, or '?' for a byte that is not printable text.
struct DisplayLine {
  std::vector<std::string> units;
  std::vector<size_t> unitOfByte; // byte offset in the line -> unit index
};

DisplayLine splitLine(const std::string &line) {
  DisplayLine d;
  d.unitOfByte.resize(line.size() + 1);
  size_t i = 0;
  while (i < line.size()) {
    auto c = static_cast<unsigned char>(line[i]);
    size_t n = 1;
    std::string shown;
    if (c >= 0x80) {
      n = utf8Length(line, i);
      if (n == 0) {
        n = 1;
        shown = "?";
      } else {
        shown = line.substr(i, n);
      }
    } else if (c == '\t' || (c >= 0x20 && c < 0x7F)) {
      shown = std::string(1, static_cast<char>(c));
    } else {
      shown = "?";
    }
    for (size_t k = 0; k < n; ++k)
      d.unitOfByte[i + k] = d.units.size();
    d.units.push_back(shown);
    i += n;
  }
  d.unitOfByte[line.size()] = d.units.size();
  return d;
}

/// Lines longer than this are shown as a window around the caret.
constexpr size_t kMaxShownUnits = 160;

} // namespace

DiagnosticEngine::DiagnosticEngine(std::string fileName, std::string source)
    : fileName_(std::move(fileName)), source_(std::move(source)) {}

void DiagnosticEngine::error(SourceRange range, std::string message,
                             std::string hint) {
  diags_.push_back(
      {Severity::Error, range, std::move(message), std::move(hint)});
  ++numErrors_;
}

void DiagnosticEngine::warning(SourceRange range, std::string message,
                               std::string hint) {
  diags_.push_back(
      {Severity::Warning, range, std::move(message), std::move(hint)});
}

void DiagnosticEngine::note(SourceRange range, std::string message) {
  diags_.push_back({Severity::Note, range, std::move(message), ""});
}

std::string DiagnosticEngine::render() const {
  std::string out;
  for (const auto &d : diags_)
    out += render(d);
  return out;
}

std::string DiagnosticEngine::render(const Diagnostic &d) const {
  const char *severity = d.severity == Severity::Error     ? "error"
                         : d.severity == Severity::Warning ? "warning"
                                                           : "note";
  const SourceLoc &b = d.range.begin;
  std::string out = fileName_;
  if (b.line > 0)
    out += ":" + std::to_string(b.line) + ":" + std::to_string(b.col);
  out += std::string(": ") + severity + ": " + d.message + "\n";

  // Find the line the range starts on.
  size_t start = 0;
  bool found = b.line > 0;
  for (int l = 1; found && l < b.line; ++l) {
    size_t nl = source_.find('\n', start);
    if (nl == std::string::npos)
      found = false;
    else
      start = nl + 1;
  }
  if (found) {
    size_t end = source_.find('\n', start);
    std::string line = source_.substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    DisplayLine dl = splitLine(line);

    auto unitAt = [&](int col) {
      size_t byte = col > 0 ? static_cast<size_t>(col - 1) : 0;
      return byte < line.size() ? dl.unitOfByte[byte]
                                : dl.units.size() + (byte - line.size());
    };
    size_t caret = unitAt(b.col);
    size_t caretEnd = caret + 1;
    const SourceLoc &e = d.range.end;
    if (e.line == b.line && e.col > b.col)
      caretEnd = std::max(caretEnd, unitAt(e.col - 1) + 1);
    else if (e.line > b.line)
      caretEnd = std::max(caretEnd, dl.units.size());

    size_t first = 0, last = dl.units.size();
    if (last > kMaxShownUnits) {
      first = caret > kMaxShownUnits / 2 ? caret - kMaxShownUnits / 2 : 0;
      last = std::min(last, first + kMaxShownUnits);
    }
    std::string shown, marks;
    if (first > 0) {
      shown += "...";
      marks += "   ";
    }
    for (size_t u = first; u < last; ++u)
      shown += dl.units[u];
    if (last < dl.units.size())
      shown += "...";
    for (size_t u = first; u < caret; ++u)
      marks += u < dl.units.size() && dl.units[u] == "\t" ? '\t' : ' ';
    marks += '^';
    size_t tildeEnd = std::min(caretEnd, std::max(last, caret + 1));
    for (size_t u = caret + 1; u < tildeEnd; ++u)
      marks += '~';
    out += shown + "\n" + marks + "\n";
  }
  if (!d.hint.empty())
    out += "hint: " + d.hint + "\n";
  return out;
}

} // namespace attn::dsl
