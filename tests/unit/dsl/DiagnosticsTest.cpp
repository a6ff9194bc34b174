// Tests of the clang-style rendering of diagnostics.
#include "attn/dsl/Diagnostics.h"

#include <gtest/gtest.h>

namespace attn::dsl {
namespace {

SourceRange range(int line, int col, int endLine, int endCol) {
  return {{line, col}, {endLine, endCol}};
}

TEST(Diagnostics, ErrorWithCaretAndHint) {
  DiagnosticEngine diag("f.attn", "attention a {\n  mask = j <= windw\n}\n");
  diag.error(range(2, 15, 2, 20), "unknown name 'windw'",
             "did you mean 'window'?");
  EXPECT_EQ(diag.render(), "f.attn:2:15: error: unknown name 'windw'\n"
                           "  mask = j <= windw\n"
                           "              ^~~~~\n"
                           "hint: did you mean 'window'?\n");
  EXPECT_TRUE(diag.hasErrors());
  EXPECT_EQ(diag.numErrors(), 1);
}

TEST(Diagnostics, NoHintLineWithoutHint) {
  DiagnosticEngine diag("f.attn", "abc\n");
  diag.error(range(1, 2, 1, 3), "bad");
  EXPECT_EQ(diag.render(), "f.attn:1:2: error: bad\nabc\n ^\n");
}

TEST(Diagnostics, NotesAndWarningsDoNotCountAsErrors) {
  DiagnosticEngine diag("f.attn", "x\ny\n");
  diag.warning(range(1, 1, 1, 2), "careful", "think");
  diag.note(range(2, 1, 2, 2), "see here");
  EXPECT_FALSE(diag.hasErrors());
  EXPECT_EQ(diag.numErrors(), 0);
  ASSERT_EQ(diag.diagnostics().size(), 2u);
  EXPECT_EQ(diag.render(), "f.attn:1:1: warning: careful\nx\n^\nhint: think\n"
                           "f.attn:2:1: note: see here\ny\n^\n");
}

TEST(Diagnostics, EmptyRangeGetsOneCaret) {
  DiagnosticEngine diag("f.attn", "mask = j <=\n");
  diag.error(range(1, 12, 1, 12), "expected an expression");
  EXPECT_EQ(diag.render(),
            "f.attn:1:12: error: expected an expression\nmask = j <=\n"
            "           ^\n");
}

TEST(Diagnostics, TabsAreKeptInTheCaretLine) {
  DiagnosticEngine diag("f.attn", "\tmask =\tfoo\n");
  diag.error(range(1, 9, 1, 12), "unknown name 'foo'");
  EXPECT_EQ(diag.render(),
            "f.attn:1:9: error: unknown name 'foo'\n\tmask =\tfoo\n"
            "\t      \t^~~\n");
}

TEST(Diagnostics, Utf8BeforeTheCaretTakesOneColumn) {
  // "é" is two bytes; columns count bytes, the caret aligns by characters.
  DiagnosticEngine diag("f.attn", "é = bad\n");
  diag.error(range(1, 6, 1, 9), "unknown name 'bad'");
  EXPECT_EQ(diag.render(),
            "f.attn:1:6: error: unknown name 'bad'\né = bad\n    ^~~\n");
}

TEST(Diagnostics, RangeOverSeveralLinesUnderlinesToTheEndOfTheFirst) {
  DiagnosticEngine diag("f.attn", "score = (a +\n  b)\n");
  diag.error(range(1, 9, 2, 5), "bad score");
  EXPECT_EQ(diag.render(),
            "f.attn:1:9: error: bad score\nscore = (a +\n        ^~~~\n");
}

TEST(Diagnostics, NoLocationPrintsNoSourceLine) {
  DiagnosticEngine diag("f.attn", "abc\n");
  diag.note({}, "too many errors; stopping here");
  EXPECT_EQ(diag.render(), "f.attn: note: too many errors; stopping here\n");
}

TEST(Diagnostics, LineBeyondTheSourcePrintsNoSourceLine) {
  DiagnosticEngine diag("f.attn", "abc");
  diag.error(range(7, 1, 7, 2), "lost");
  EXPECT_EQ(diag.render(), "f.attn:7:1: error: lost\n");
}

TEST(Diagnostics, CarriageReturnsAreNotPrinted) {
  DiagnosticEngine diag("f.attn", "abc\r\ndef\r\n");
  diag.error(range(2, 1, 2, 4), "bad");
  EXPECT_EQ(diag.render(), "f.attn:2:1: error: bad\ndef\n^~~\n");
}

TEST(Diagnostics, ControlBytesAreShownAsQuestionMarks) {
  std::string src = "a\x01\x02 b\xff";
  DiagnosticEngine diag("f.attn", src);
  diag.error(range(1, 5, 1, 6), "bad");
  EXPECT_EQ(diag.render(), "f.attn:1:5: error: bad\na?? b?\n    ^\n");
}

TEST(Diagnostics, LongLinesAreShownAsAWindowAroundTheCaret) {
  std::string line(1000, 'x');
  line.replace(600, 3, "bad");
  DiagnosticEngine diag("f.attn", line + "\n");
  diag.error(range(1, 601, 1, 604), "bad thing");
  std::string out = diag.render();
  size_t first = out.find('\n') + 1;
  size_t second = out.find('\n', first) + 1;
  std::string shown = out.substr(first, second - first - 1);
  std::string caret = out.substr(second, out.find('\n', second) - second);
  EXPECT_LT(shown.size(), 200u);
  EXPECT_EQ(shown.substr(0, 3), "...");
  EXPECT_EQ(shown.substr(shown.size() - 3), "...");
  size_t caretAt = caret.find('^');
  ASSERT_NE(caretAt, std::string::npos);
  EXPECT_EQ(shown.substr(caretAt, 3), "bad");
  EXPECT_EQ(caret.substr(caretAt), "^~~");
}

TEST(Diagnostics, RenderOneMatchesItsPartOfRenderAll) {
  DiagnosticEngine diag("f.attn", "a\nb\n");
  diag.error(range(1, 1, 1, 2), "first");
  diag.error(range(2, 1, 2, 2), "second", "fix it");
  EXPECT_EQ(diag.render(),
            diag.render(diag.diagnostics()[0]) +
                diag.render(diag.diagnostics()[1]));
  EXPECT_EQ(diag.numErrors(), 2);
  EXPECT_EQ(diag.fileName(), "f.attn");
  EXPECT_EQ(diag.source(), "a\nb\n");
}

} // namespace
} // namespace attn::dsl
