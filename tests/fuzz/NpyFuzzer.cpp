// libFuzzer target: the .npy reader on arbitrary bytes (through a memfd, as
// readNpy takes a path), and a write/read round trip of what it accepts.
#include "attn/runtime/Npy.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace {

int memfd() {
  static int fd = memfd_create("attnc-fuzz-npy", 0);
  return fd;
}

std::string roundTripPath() {
  static std::string path = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "attnc-fuzz-npy-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      std::abort();
    return tmpl + "/out.npy";
  }();
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd();
  if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
    std::abort();
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  attn::runtime::HostTensor t;
  std::string descr;
  attn::runtime::Status s = attn::runtime::readNpy(path, t, &descr);
  if (!s) {
    if (s.message().empty())
      __builtin_trap(); // an error must say what is wrong
    return 0;
  }
  if (t.bytes.size() != size_t(t.numel()) * attn::runtime::elemSize(t.type))
    __builtin_trap();
  // What was read writes back and reads again to the same tensor.
  if (t.numel() <= (1 << 16)) {
    if (!attn::runtime::writeNpy(roundTripPath(), t))
      __builtin_trap();
    attn::runtime::HostTensor back;
    if (!attn::runtime::readNpy(roundTripPath(), back) || back.shape != t.shape ||
        back.type != t.type || back.bytes.size() != t.bytes.size() ||
        (!t.bytes.empty() && std::memcmp(back.data(), t.data(), t.bytes.size()) != 0))
      __builtin_trap();
  }
  return 0;
}
