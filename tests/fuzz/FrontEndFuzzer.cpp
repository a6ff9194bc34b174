// libFuzzer target: the front end (lexer, parser, Sema, diagnostics, the AST
// printer) on arbitrary bytes. Any crash, sanitizer report, hang or
// unbounded memory is a bug; every input must end in a module or errors.
#include "attn/dsl/AST.h"
#include "attn/dsl/Diagnostics.h"
#include "attn/dsl/Sema.h"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1 << 16))
    return -1; // not added to the corpus
  std::string text(reinterpret_cast<const char *>(data), size);
  attn::dsl::DiagnosticEngine diag("fuzz.attn", text);
  auto module = attn::dsl::parseAndCheck("fuzz.attn", text, diag);
  std::string rendered = diag.render();
  if (module) {
    if (diag.numErrors() != 0)
      __builtin_trap(); // a module is returned only without errors
    (void)attn::dsl::printModule(*module);
  } else if (rendered.find("error") == std::string::npos) {
    __builtin_trap(); // a rejected file must say why
  }
  return 0;
}
