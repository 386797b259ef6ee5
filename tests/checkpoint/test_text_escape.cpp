// The one escaper of untrusted text: quoted_value for values quoted in one-line errors (the
// readers', the Hub client's), printable for terminal lines (the command-line tools').
#include "sla/checkpoint/text_escape.h"
#include "sla/checkpoint/utf8.h"

#include <catch.hpp>

#include <string>

using sla::checkpoint::is_valid_utf8;
using sla::checkpoint::printable;
using sla::checkpoint::quoted_value;

TEST_CASE("quoted_value keeps printable ASCII and escapes quotes, backslashes and every other byte") {
  CHECK(quoted_value("plain/path.bin", 400) == "plain/path.bin");
  CHECK(quoted_value(std::string("a\0b", 3), 400) == "a\\x00b");
  CHECK(quoted_value("line\nverify: ok\x1b[0m\x7f", 400) == "line\\x0averify: ok\\x1b[0m\\x7f");
  CHECK(quoted_value("q\"b\\", 400) == "q\\\"b\\\\");
  CHECK(quoted_value("caf\xc3\xa9 \xc2\x9b", 400) == "caf\\xc3\\xa9 \\xc2\\x9b");  // no UTF-8 kept
  CHECK(quoted_value("", 400).empty());
}

TEST_CASE("quoted_value cuts at max_bytes of escaped text and says so") {
  CHECK(quoted_value(std::string(1000, 'x'), 400) == std::string(400, 'x') + "...");
  CHECK(quoted_value("abcd", 4) == "abcd");  // exactly max_bytes: nothing was cut
  CHECK(quoted_value("abcde", 4) == "abcd...");
  CHECK(quoted_value("\x01\x02", 4) == "\\x01...");
  CHECK(quoted_value("ab\x01", 4) == "ab\\x01");  // an escape is never split
}

TEST_CASE("printable keeps UTF-8 and escapes what a terminal would act on") {
  CHECK(printable("trainer\n verify: ok\x1b]0;x\x07") == "trainer\\n verify: ok\\x1b]0;x\\x07");
  CHECK(printable("a\tb\rc\x7f") == "a\\tb\\rc\\x7f");
  CHECK(printable("q\"b\\") == "q\"b\\");                                 // quotes are not special here
  CHECK(printable("caf\xc3\xa9 \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xf0\x9f\x98\x80");  // 2- and 4-byte UTF-8
  CHECK(printable("\xc2\x9b" "2J") == "\\u009b2J");                        // C1 CSI
  CHECK(printable("a\xe2\x80\xae" "cba") == "a\\u202ecba");                // right-to-left override
  CHECK(printable("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");      // isolates
  CHECK(printable("1\xe2\x80\xa8" "2\xe2\x80\xa9") == "1\\u20282\\u2029");  // line and paragraph separators
  CHECK(printable(std::string(1000, 'x')).size() == 1000);                 // never cut
}

TEST_CASE("printable escapes, byte by byte, what is not UTF-8") {
  CHECK(printable("\xff") == "\\xff");
  CHECK(printable("\x80x") == "\\x80x");                       // a stray continuation byte
  CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");                // overlong '/'
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");       // a surrogate
  CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(printable("\xe2\x82") == "\\xe2\\x82");                // truncated at the end
  CHECK(printable("\xe2\x82x") == "\\xe2\\x82x");              // truncated before ASCII
}

TEST_CASE("printable and is_valid_utf8 agree with the UTF-8 rules on every 1- and 2-byte string") {
  // The oracle, written out: ASCII bytes, or a 2-byte sequence C2..DF followed by 80..BF.
  const auto well_formed = [](int a, int b) {
    if (b < 0) return a < 0x80;
    return (a < 0x80 && b < 0x80) || (a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf);
  };
  const auto has_control = [](int a, int b) {
    const auto ascii_control = [](int c) { return (c >= 0 && c < 0x20) || c == 0x7f; };
    return ascii_control(a) || ascii_control(b) || (a == 0xc2 && b >= 0x80 && b <= 0x9f);  // C0, DEL, C1
  };
  int disagreements = 0;
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string s(1, char(a));
      if (b >= 0) s += char(b);
      const bool kept = well_formed(a, b) && !has_control(a, b);
      if ((printable(s) == s) != kept || is_valid_utf8(s) != well_formed(a, b)) {
        if (++disagreements <= 5) FAIL_CHECK("bytes " << a << " " << b);
      }
    }
  }
  CHECK(disagreements == 0);
}
