// libFuzzer target: kernels the front end accepts are lowered through MLIR
// to a Halide pipeline (AttnToHalide and the CPU schedule; with
// ATTNC_FUZZ_STMT=1 also through Halide's lowering to a loop nest). Run
// under -timeout and -rss_limit_mb so that blow-ups in lowering, like the
// exponential tile bounds of nested masks, are found as hangs or OOMs.
#include "attn/compiler/Driver.h"
#include "attn/dsl/Sema.h"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return -1;
  std::string text(reinterpret_cast<const char *>(data), size);
  attn::dsl::DiagnosticEngine diag("fuzz.attn", text);
  auto module = attn::dsl::parseAndCheck("fuzz.attn", text, diag);
  if (!module)
    return 0;
  static const bool stmt = [] {
    const char *e = std::getenv("ATTNC_FUZZ_STMT");
    return e && *e == '1';
  }();
  for (const auto &k : module->kernels) {
    attn::CompileOptions opts;
    opts.kernel = k.name;
    std::string out, err;
    bool ok = attn::emitStage({"fuzz.attn", text}, stmt ? attn::Stage::Stmt : attn::Stage::Halide,
                              opts, out, err);
    // An accepted kernel either lowers or fails with a message; an internal
    // error is a bug in the compiler, not in the input.
    if (!ok && (err.empty() || err.find("internal error") != std::string::npos))
      __builtin_trap();
  }
  return 0;
}
