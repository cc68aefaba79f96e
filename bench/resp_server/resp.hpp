// resp.hpp: the Redis protocol (RESP2) as the server reads and writes it: an incremental request parser with
// limits, and reply encoders.
//
// Requests are arrays of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), or inline commands ("PING\r\n", words
// split on spaces, as Redis accepts from telnet). The parser never copies an argument: a parsed command is a list of
// views into the input buffer, valid until the buffer is next changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace resp {

struct limits {
  std::size_t max_bulk = std::size_t{512} << 20;   // Redis's proto-max-bulk-len
  std::size_t max_array = std::size_t{1} << 20;    // arguments per command
  std::size_t max_inline = std::size_t{64} << 10;  // an inline command, or an unterminated header line
};

// Bytes received and not yet parsed. prepare() gives room to read into, commit() takes what was read.
class input_buffer {
 public:
  // At least `n` writable bytes at the end (moves the unparsed bytes to the front first when that makes room).
  char* prepare(std::size_t n);
  void commit(std::size_t n) noexcept { end_ += n; }
  void consume(std::size_t n) noexcept;
  std::string_view unparsed() const noexcept { return {data_.data() + begin_, end_ - begin_}; }
  // Makes room for a request of `total` bytes from the start of the unparsed bytes (a big bulk string announced
  // by its header), so it arrives in as few reads as possible.
  void reserve_request(std::size_t total);

 private:
  std::vector<char> data_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

class parser {
 public:
  enum class status : std::uint8_t { command, incomplete, error };

  explicit parser(limits l = {}) : limits_(l) {}

  // Parses the next request at the front of `in`. command: args() holds it and consumed() says how many bytes it
  // took (args() is empty for an empty command, "*0\r\n" or a blank line, which Redis ignores). incomplete: more bytes
  // are needed (partial progress is kept: an array is not parsed again from its start). error: error() says why, in
  // Redis's words; the connection must be closed.
  status next(std::string_view in);

  const std::vector<std::string_view>& args() const noexcept { return args_; }
  std::size_t consumed() const noexcept { return consumed_; }
  const std::string& error() const noexcept { return error_; }
  // While incomplete: how many bytes the request needs in all, if known (to reserve room for a big bulk string).
  std::size_t bytes_needed() const noexcept { return needed_; }

 private:
  status fail(std::string why);
  status parse_inline(std::string_view in);

  limits limits_;
  std::vector<std::string_view> args_;
  std::string error_;
  std::size_t consumed_ = 0;
  std::size_t needed_ = 0;
  // An array in progress: how many elements it has, where those parsed so far are (offsets from the request's
  // start, which stay right when the buffer moves), and where the next one starts.
  std::size_t elements_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;
  std::size_t position_ = 0;
  bool in_array_ = false;
};

// Reply encoders: each appends one reply to `out`.
void simple(std::string& out, std::string_view text);  // +text
void error(std::string& out, std::string_view text);   // -text (text starts with ERR, WRONGTYPE...)
void integer(std::string& out, long long value);       // :value
void bulk(std::string& out, std::string_view value);   // $len value
void null_bulk(std::string& out);                      // $-1
void array_header(std::string& out, std::size_t n);    // *n, then n replies

// Parses a whole decimal integer as Redis does (no spaces, no '+', fits in a long long).
std::optional<long long> to_integer(std::string_view text) noexcept;

}  // namespace resp
