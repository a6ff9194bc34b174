// Diagnostics for `.attn` sources, printed the way clang prints them:
//   file:line:col: error: message
//     <the source line>
//         ^~~~
//   note/hint: ...
#pragma once

#include "attn/dsl/AST.h"

#include <string>
#include <vector>

namespace attn::dsl {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity = Severity::Error;
  SourceRange range;
  std::string message;
  std::string hint; // optional; printed as "hint: ..." after the caret line
};

/// Collects diagnostics for one source buffer and renders them.
class DiagnosticEngine {
public:
  DiagnosticEngine(std::string fileName, std::string source);

  void error(SourceRange range, std::string message, std::string hint = "");
  void warning(SourceRange range, std::string message, std::string hint = "");
  void note(SourceRange range, std::string message);

  bool hasErrors() const { return numErrors_ > 0; }
  int numErrors() const { return numErrors_; }
  const std::vector<Diagnostic> &diagnostics() const { return diags_; }
  const std::string &fileName() const { return fileName_; }
  const std::string &source() const { return source_; }

  /// All diagnostics, clang style, each ending in a newline.
  std::string render() const;
  /// One diagnostic, clang style.
  std::string render(const Diagnostic &d) const;

private:
  std::string fileName_;
  std::string source_;
  std::vector<Diagnostic> diags_;
  int numErrors_ = 0;
};

} // namespace attn::dsl
