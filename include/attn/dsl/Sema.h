// Semantic checks of a parsed module: name resolution, types, dimensions,
// defaults (see the invariants documented on attn::dsl::Kernel).
#pragma once

#include "attn/dsl/AST.h"
#include "attn/dsl/Diagnostics.h"

#include <optional>

namespace attn::dsl {

/// Checks and annotates `module` in place. Returns false (with diagnostics)
/// when the module is invalid.
bool checkModule(Module &module, DiagnosticEngine &diag);

/// parseModule + checkModule.
std::optional<Module> parseAndCheck(const std::string &fileName,
                                    const std::string &source,
                                    DiagnosticEngine &diag);

} // namespace attn::dsl
