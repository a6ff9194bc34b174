// Helpers shared by the dsl/ unit tests: run the front end on a string and
// look at what came out.
#pragma once

#include "attn/dsl/Parser.h"
#include "attn/dsl/Sema.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace attn::dsl::test {

struct Run {
  std::optional<Module> module;
  std::vector<Diagnostic> diags;
  std::string rendered;

  int errors() const {
    int n = 0;
    for (const auto &d : diags)
      n += d.severity == Severity::Error;
    return n;
  }
  const Diagnostic &firstError() const {
    for (const auto &d : diags)
      if (d.severity == Severity::Error)
        return d;
    static Diagnostic none;
    ADD_FAILURE() << "expected an error";
    return none;
  }
  const Kernel &kernel(size_t n = 0) const { return module->kernels.at(n); }
};

inline Run parseOnly(const std::string &src) {
  DiagnosticEngine diag("test.attn", src);
  Run r;
  r.module = parseModule("test.attn", src, diag);
  r.diags = diag.diagnostics();
  r.rendered = diag.render();
  return r;
}

inline Run check(const std::string &src) {
  DiagnosticEngine diag("test.attn", src);
  Run r;
  r.module = parseAndCheck("test.attn", src, diag);
  r.diags = diag.diagnostics();
  r.rendered = diag.render();
  return r;
}

/// The source line and caret line printed under the first error, and its
/// hint ("" when it has none).
struct Shown {
  std::string source, caret, hint;
};
inline Shown shownFirstError(const Run &r) {
  Shown s;
  size_t at = r.rendered.find(": error: ");
  if (at == std::string::npos)
    return s;
  std::vector<std::string> lines;
  size_t start = r.rendered.find('\n', at) + 1;
  for (int n = 0; n < 3 && start < r.rendered.size(); ++n) {
    size_t end = r.rendered.find('\n', start);
    lines.push_back(r.rendered.substr(start, end - start));
    start = end + 1;
  }
  if (lines.size() > 0)
    s.source = lines[0];
  if (lines.size() > 1)
    s.caret = lines[1];
  if (lines.size() > 2 && lines[2].rfind("hint: ", 0) == 0)
    s.hint = lines[2].substr(6);
  return s;
}

/// A kernel `t` with q, k, v of shape [B, H, L, D] (lines 1-4) followed by
/// `body`, which therefore starts on line 5.
inline std::string kernel(const std::string &body,
                          const std::string &type = "f32") {
  return "attention t {\n  q: " + type + "[B, H, L, D]\n  k: " + type +
         "[B, H, L, D]\n  v: " + type + "[B, H, L, D]\n" + body + "\n}\n";
}

/// Asserts the single (first) error: position, message and the clang-style
/// rendering with its caret line.
#define EXPECT_FIRST_ERROR(run, LINE, COL, MESSAGE)                            \
  do {                                                                         \
    const auto &r_ = (run);                                                    \
    const Diagnostic d_ = r_.firstError();                                     \
    EXPECT_EQ(d_.range.begin.line, LINE) << r_.rendered;                       \
    EXPECT_EQ(d_.range.begin.col, COL) << r_.rendered;                         \
    EXPECT_EQ(d_.message, MESSAGE) << r_.rendered;                             \
  } while (0)

} // namespace attn::dsl::test
