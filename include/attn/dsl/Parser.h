// Lexer + recursive-descent parser for `.attn` files (LANGUAGE.md §1-§3).
#pragma once

#include "attn/dsl/AST.h"
#include "attn/dsl/Diagnostics.h"

#include <optional>

namespace attn::dsl {

/// Parses a whole file. On syntax errors, reports them to `diag` (recovering
/// to report several where it can) and returns std::nullopt. Never throws and
/// never crashes, whatever the input.
std::optional<Module> parseModule(const std::string &fileName,
                                  const std::string &source,
                                  DiagnosticEngine &diag);

} // namespace attn::dsl
