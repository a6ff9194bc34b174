// `.npy` reader and writer (see Npy.h). The header is a Python dict literal;
// it is parsed by a small, bounds-checked parser that accepts what NumPy
// writes (versions 1.0-3.0, optional Python 2 `L` suffixes on shape entries).
#include "attn/runtime/Npy.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace attn::runtime {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

std::string errnoText() { return std::strerror(errno); }

/// A `FILE *` closed on scope exit.
struct File {
  std::FILE *f = nullptr;
  explicit File(std::FILE *f) : f(f) {}
  ~File() {
    if (f)
      std::fclose(f);
  }
  File(const File &) = delete;
  File &operator=(const File &) = delete;
};

struct NpyHeader {
  std::string descr;
  bool fortranOrder = false;
  std::vector<int64_t> shape;
};

/// Parser of the header dict, e.g.
///   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
public:
  explicit HeaderParser(const std::string &text) : s_(text) {}

  /// Returns an error message, or an empty string on success.
  std::string parse(NpyHeader &out) {
    bool haveDescr = false, haveOrder = false, haveShape = false;
    skipSpace();
    if (!eat('{'))
      return "the header is not a Python dict";
    skipSpace();
    while (!eat('}')) {
      std::string key;
      if (!parseString(key))
        return "expected a quoted key in the header dict";
      skipSpace();
      if (!eat(':'))
        return "expected ':' after '" + key + "' in the header dict";
      skipSpace();
      if (key == "descr") {
        if (peek() == '[')
          return "structured dtypes (a list as 'descr') are not supported";
        if (!parseString(out.descr))
          return "'descr' is not a string";
        haveDescr = true;
      } else if (key == "fortran_order") {
        if (!parseBool(out.fortranOrder))
          return "'fortran_order' is not True or False";
        haveOrder = true;
      } else if (key == "shape") {
        std::string err = parseShape(out.shape);
        if (!err.empty())
          return err;
        haveShape = true;
      } else if (!skipValue()) {
        return "cannot parse the value of '" + key + "' in the header dict";
      }
      skipSpace();
      if (eat(','))
        skipSpace();
      else if (peek() != '}')
        return "expected ',' or '}' in the header dict";
    }
    skipSpace();
    if (pos_ != s_.size())
      return "unexpected text after the header dict";
    if (!haveDescr)
      return "the header has no 'descr'";
    if (!haveOrder)
      return "the header has no 'fortran_order'";
    if (!haveShape)
      return "the header has no 'shape'";
    return "";
  }

private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (pos_ >= s_.size() || s_[pos_] != c)
      return false;
    ++pos_;
    return true;
  }
  bool eatWord(const char *w) {
    size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0)
      return false;
    pos_ += n;
    return true;
  }
  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' ||
                                s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool parseString(std::string &out) {
    char quote = peek();
    if (quote != '\'' && quote != '"')
      return false;
    ++pos_;
    out.clear();
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size())
        ++pos_;
      out += s_[pos_++];
    }
    return eat(quote);
  }
  bool parseBool(bool &out) {
    if (eatWord("True")) {
      out = true;
      return true;
    }
    if (eatWord("False")) {
      out = false;
      return true;
    }
    return false;
  }
  std::string parseShape(std::vector<int64_t> &shape) {
    shape.clear();
    if (!eat('('))
      return "'shape' is not a tuple";
    skipSpace();
    while (!eat(')')) {
      if (peek() == '-')
        return "'shape' has a negative dimension";
      if (!std::isdigit(static_cast<unsigned char>(peek())))
        return "'shape' must be a tuple of non-negative integers";
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (int64_t(1) << 56))
          return "'shape' has a dimension too large";
        v = v * 10 + (s_[pos_++] - '0');
      }
      eat('L');
      shape.push_back(v);
      if (shape.size() > 64)
        return "'shape' has too many dimensions";
      skipSpace();
      if (eat(','))
        skipSpace();
      else if (peek() != ')')
        return "expected ',' or ')' in 'shape'";
    }
    return "";
  }
  /// Skips a value of an unknown key: a string, a bool, None, a number or a
  /// bracketed group without nested quotes of the closing kind.
  bool skipValue() {
    std::string str;
    bool b;
    if (parseString(str) || parseBool(b) || eatWord("None"))
      return true;
    if (peek() == '(' || peek() == '[' || peek() == '{') {
      int depth = 0;
      while (pos_ < s_.size()) {
        char c = s_[pos_];
        if (c == '\'' || c == '"') {
          if (!parseString(str))
            return false;
          continue;
        }
        ++pos_;
        if (c == '(' || c == '[' || c == '{')
          ++depth;
        else if ((c == ')' || c == ']' || c == '}') && --depth == 0)
          return true;
      }
      return false;
    }
    size_t start = pos_;
    while (pos_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[pos_])) ||
            s_[pos_] == '.' || s_[pos_] == '-' || s_[pos_] == '+'))
      ++pos_;
    return pos_ > start;
  }

  const std::string &s_;
  size_t pos_ = 0;
};

std::string shapeText(const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << "(";
  for (size_t d = 0; d < shape.size(); ++d)
    os << (d ? ", " : "") << shape[d];
  if (shape.size() == 1)
    os << ",";
  os << ")";
  return os.str();
}

/// The element type of a supported little-endian dtype string.
std::optional<ElemType> elemTypeOfDescr(const std::string &d) {
  if (d.size() != 3)
    return std::nullopt;
  char order = d[0];
  std::string code = d.substr(1);
  if (code == "b1")
    return order == '|' || order == '<' || order == '='
               ? std::optional<ElemType>(ElemType::Bool)
               : std::nullopt;
  if (order != '<' && order != '=')
    return std::nullopt;
  if (code == "f4")
    return ElemType::F32;
  if (code == "f8")
    return ElemType::F64;
  if (code == "f2")
    return ElemType::F16;
  if (code == "i4")
    return ElemType::I32;
  if (code == "i8")
    return ElemType::I64;
  return std::nullopt;
}

std::string unsupportedDescr(const std::string &d) {
  std::string msg = "unsupported dtype '" + d + "'";
  if (d.size() == 3 && d[0] == '>' && d.substr(1) != "b1")
    msg += " (big-endian data is not supported; convert it with "
           "arr.astype('<" +
           d.substr(1) + "'))";
  msg += "; supported dtypes: <f4, <f8, <f2, <i4, <i8, |b1";
  return msg;
}

/// Reads `path`; when `tensorName` is given, the dtype is checked against
/// `declared` (LANGUAGE.md §7) before any data is read.
Status readNpyImpl(const std::string &path, HostTensor &out,
                   std::string *descrOut, const std::string *tensorName,
                   ElemType declared) {
  auto fail = [&](const std::string &what) {
    std::string prefix =
        tensorName ? "tensor '" + *tensorName + "': file " : "file ";
    return Status::error(prefix + path + ": " + what);
  };
  File file(std::fopen(path.c_str(), "rb"));
  if (!file.f)
    return fail("cannot open: " + errnoText());
  struct stat st;
  if (fstat(fileno(file.f), &st) != 0)
    return fail("cannot stat: " + errnoText());
  if (!S_ISREG(st.st_mode))
    return fail("not a regular file");
  const uint64_t fileSize = static_cast<uint64_t>(st.st_size);

  unsigned char pre[12];
  if (fileSize < kMagicLen + 2 ||
      std::fread(pre, 1, kMagicLen + 2, file.f) != kMagicLen + 2)
    return fail("not a .npy file (too short for the magic string)");
  if (std::memcmp(pre, kMagic, kMagicLen) != 0)
    return fail("not a .npy file (bad magic string)");
  int major = pre[6], minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return fail("unsupported .npy format version " + std::to_string(major) +
                "." + std::to_string(minor));
  size_t lenBytes = major == 1 ? 2 : 4;
  if (std::fread(pre + 8, 1, lenBytes, file.f) != lenBytes)
    return fail("truncated header (missing the header length)");
  uint64_t headerLen = pre[8] | (uint64_t(pre[9]) << 8);
  if (lenBytes == 4)
    headerLen |= (uint64_t(pre[10]) << 16) | (uint64_t(pre[11]) << 24);
  const uint64_t dataOffset = kMagicLen + 2 + lenBytes + headerLen;
  if (dataOffset > fileSize)
    return fail("truncated header (header length " +
                std::to_string(headerLen) + " exceeds the file size " +
                std::to_string(fileSize) + ")");
  std::string text(headerLen, '\0');
  if (headerLen &&
      std::fread(text.data(), 1, headerLen, file.f) != headerLen)
    return fail("cannot read the header: " + errnoText());

  NpyHeader header;
  std::string err = HeaderParser(text).parse(header);
  if (!err.empty())
    return fail("bad header: " + err);
  if (descrOut)
    *descrOut = header.descr;

  std::optional<ElemType> fileType = elemTypeOfDescr(header.descr);
  if (tensorName) {
    const char *expected = npyDescr(declared);
    bool matches = fileType &&
                   (*fileType == declared ||
                    (declared == ElemType::BF16 && *fileType == ElemType::F32));
    if (!matches)
      return Status::error("tensor '" + *tensorName + "': file " + path +
                           " has dtype " + header.descr + " but " +
                           *tensorName + " is declared " +
                           dsl::toString(declared) + " (expects " + expected +
                           ")");
  }
  if (!fileType)
    return fail(unsupportedDescr(header.descr));
  if (header.fortranOrder)
    return fail("Fortran-order (column-major) data is not supported; save a "
                "C-order array (np.ascontiguousarray)");

  const size_t itemSize = elemSize(*fileType);
  uint64_t numel = 1;
  bool empty = false;
  for (int64_t d : header.shape)
    empty |= d == 0;
  if (!empty) {
    for (int64_t d : header.shape) {
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
          numel > fileSize)
        return fail("shape " + shapeText(header.shape) +
                    " needs more data than the file holds (" +
                    std::to_string(fileSize) + " bytes)");
    }
  } else {
    numel = 0;
  }
  const uint64_t dataBytes = numel * itemSize;
  const uint64_t available = fileSize - dataOffset;
  if (dataBytes > available)
    return fail("truncated data: shape " + shapeText(header.shape) + " of " +
                header.descr + " needs " + std::to_string(dataBytes) +
                " bytes but only " + std::to_string(available) +
                " follow the header");

  HostTensor t(*fileType, header.shape);
  if (dataBytes &&
      std::fread(t.data(), 1, dataBytes, file.f) != dataBytes)
    return fail("cannot read the data: " + errnoText());
  if (t.type == ElemType::Bool)
    for (auto &byte : t.bytes)
      byte = byte ? 1 : 0;

  if (tensorName && declared == ElemType::BF16) {
    HostTensor bf(ElemType::BF16, t.shape);
    const float *src = t.as<float>();
    uint16_t *dst = bf.as<uint16_t>();
    for (int64_t n = 0, e = t.numel(); n < e; ++n)
      dst[n] = floatToBf16(src[n]);
    out = std::move(bf);
  } else {
    out = std::move(t);
  }
  return Status::ok();
}

bool writeAll(int fd, const void *data, size_t n) {
  const char *p = static_cast<const char *>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

} // namespace

const char *npyDescr(ElemType t) {
  switch (t) {
  case ElemType::F32:
  case ElemType::BF16:
    return "<f4";
  case ElemType::F64:
    return "<f8";
  case ElemType::F16:
    return "<f2";
  case ElemType::I32:
    return "<i4";
  case ElemType::I64:
    return "<i8";
  case ElemType::Bool:
    return "|b1";
  }
  return "?";
}

Status readNpy(const std::string &path, HostTensor &out,
               std::string *npyDescrOut) {
  return readNpyImpl(path, out, npyDescrOut, nullptr, ElemType::F32);
}

Status readNpyAs(const std::string &path, const std::string &tensorName,
                 ElemType declared, HostTensor &out) {
  return readNpyImpl(path, out, nullptr, &tensorName, declared);
}

Status writeNpy(const std::string &path, const HostTensor &t) {
  for (int64_t d : t.shape)
    if (d < 0)
      return Status::error("cannot write " + path + ": negative dimension in " +
                           t.describe());
  const int64_t numel = t.numel();
  if (t.bytes.size() != static_cast<size_t>(numel) * elemSize(t.type))
    return Status::error("cannot write " + path + ": tensor " + t.describe() +
                         " holds " + std::to_string(t.bytes.size()) +
                         " bytes, not the size of its shape");

  std::string dict = std::string("{'descr': '") + npyDescr(t.type) +
                     "', 'fortran_order': False, 'shape': " +
                     shapeText(t.shape) + ", }";
  // NumPy pads the header with spaces so that the data starts on a multiple
  // of 64 bytes, and ends it with a newline.
  size_t preamble = kMagicLen + 2 + 2;
  int major = 1;
  size_t total = preamble + dict.size() + 1;
  if ((total + 63) / 64 * 64 - preamble > 0xffff) {
    major = 2;
    preamble += 2;
    total += 2;
  }
  size_t padded = (total + 63) / 64 * 64;
  std::string header = dict + std::string(padded - total, ' ') + "\n";
  std::string pre(kMagic, kMagicLen);
  pre += static_cast<char>(major);
  pre += '\0';
  uint32_t hl = static_cast<uint32_t>(header.size());
  pre += static_cast<char>(hl & 0xff);
  pre += static_cast<char>((hl >> 8) & 0xff);
  if (major == 2) {
    pre += static_cast<char>((hl >> 16) & 0xff);
    pre += static_cast<char>((hl >> 24) & 0xff);
  }

  // Where the bytes go: a symbolic link is followed (its target is
  // written, the link stays); a special file (/dev/null, a FIFO, a
  // terminal) is written in place; a regular file (or a new name) gets a
  // temporary file beside it that is renamed over it when complete.
  std::string target = path;
  struct stat st;
  bool inPlace = ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
  int fd = -1;
  std::string tmp;
  if (inPlace) {
    if (S_ISDIR(st.st_mode))
      return Status::error("cannot write " + path + ": it is a directory");
    fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  } else {
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      std::error_code ec;
      std::filesystem::path resolved = std::filesystem::weakly_canonical(path, ec);
      if (ec)
        return Status::error("cannot write " + path + ": cannot resolve the link: " +
                             ec.message());
      target = resolved.string();
    }
    static std::atomic<unsigned> counter{0};
    tmp = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  }
  if (fd < 0)
    return Status::error("cannot write " + path + ": " + errnoText());
  auto abandon = [&](const std::string &why) {
    ::close(fd);
    if (!inPlace)
      ::unlink(tmp.c_str());
    return Status::error("cannot write " + path + ": " + why);
  };

  if (!writeAll(fd, pre.data(), pre.size()) ||
      !writeAll(fd, header.data(), header.size()))
    return abandon(errnoText());
  if (t.type == ElemType::BF16) {
    std::vector<float> chunk;
    const uint16_t *src = t.as<uint16_t>();
    for (int64_t start = 0; start < numel; start += 65536) {
      int64_t n = std::min<int64_t>(65536, numel - start);
      chunk.resize(static_cast<size_t>(n));
      for (int64_t e = 0; e < n; ++e)
        chunk[e] = bf16ToFloat(src[start + e]);
      if (!writeAll(fd, chunk.data(), chunk.size() * sizeof(float)))
        return abandon(errnoText());
    }
  } else if (!writeAll(fd, t.data(), t.bytes.size())) {
    return abandon(errnoText());
  }
  if (::close(fd) != 0) {
    std::string why = errnoText();
    if (!inPlace)
      ::unlink(tmp.c_str());
    return Status::error("cannot write " + path + ": " + why);
  }
  if (!inPlace && std::rename(tmp.c_str(), target.c_str()) != 0) {
    std::string why = errnoText();
    ::unlink(tmp.c_str());
    return Status::error("cannot write " + path + ": " + why);
  }
  return Status::ok();
}

} // namespace attn::runtime
