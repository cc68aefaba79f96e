// A test client for the RESP server, over anydefer's own tcp_stream on a reactor of its own: sends raw bytes,
// reads and parses RESP2 replies.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/net/tcp.hpp"

namespace resp_test {

struct reply {
  char type = 0;             // '+', '-', ':', '$', '*'
  std::string text;          // simple string, error, bulk (not for a null bulk)
  long long number = 0;      // integer; the length for '$' and '*' (-1: null)
  std::vector<reply> items;  // array elements
  bool is_null() const { return (type == '$' || type == '*') && number < 0; }
};

// Parses one reply at `at`; nullopt if incomplete; throws std::runtime_error if malformed.
inline std::optional<reply> parse_reply(std::string_view in, std::size_t& at) {
  const std::size_t lf = in.find("\r\n", at);
  if (lf == std::string_view::npos) return std::nullopt;
  reply r;
  r.type = in[at];
  const std::string line(in.substr(at + 1, lf - at - 1));
  std::size_t next = lf + 2;
  switch (r.type) {
    case '+':
    case '-':
      r.text = line;
      break;
    case ':':
      r.number = std::stoll(line);
      break;
    case '$':
      r.number = std::stoll(line);
      if (r.number >= 0) {
        const auto n = static_cast<std::size_t>(r.number);
        if (in.size() < next + n + 2) return std::nullopt;
        r.text = std::string(in.substr(next, n));
        next += n + 2;
      }
      break;
    case '*':
      r.number = std::stoll(line);
      for (long long i = 0; i < r.number; ++i) {
        auto item = parse_reply(in, next);
        if (!item) return std::nullopt;
        r.items.push_back(std::move(*item));
      }
      break;
    default:
      throw std::runtime_error("not a RESP reply: " + std::string(in.substr(at, 40)));
  }
  at = next;
  return r;
}

// Encodes a command as a RESP array of bulk strings.
template <class Args>
std::string command_of(const Args& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (std::string_view a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}
inline std::string command(std::initializer_list<std::string_view> args) { return command_of(args); }
inline std::string command(const std::vector<std::string>& args) { return command_of(args); }

class client {
 public:
  explicit client(const anydefer::net::endpoint& server) {
    loop_.start();
    stream_ = anydefer::net::tcp_stream::connect(loop_, server).get();
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client() {
    anydefer::submit(loop_, [this] { stream_.close(); }).get();
    loop_.stop();
  }

  void send(std::string bytes) {
    anydefer::submit(loop_, [this, b = std::move(bytes)]() { return stream_.write_all(b).add_callback([] {}); }).get();
  }

  // The next `n` replies, waiting for them (std::runtime_error if the server closes first).
  std::vector<reply> receive(std::size_t n) {
    return anydefer::submit(loop_, [this, n] { return read_replies(n); }).get();
  }
  reply receive() { return receive(1).front(); }

  reply call(std::initializer_list<std::string_view> args) {
    send(command(args));
    return receive();
  }
  reply call(const std::vector<std::string>& args) {
    send(command(args));
    return receive();
  }

  // True once the server closed the connection (end of stream), having read and dropped any bytes before it.
  bool closed_by_server() {
    return anydefer::submit(loop_, [this]() -> anydefer::deferred<bool> { return wait_end(); }).get();
  }

  // Closes this side at once (a client that goes away).
  void drop() {
    anydefer::submit(loop_, [this] { stream_.close(); }).get();
  }

 private:
  anydefer::deferred<std::vector<reply>> read_replies(std::size_t n) {
    std::vector<reply> out;
    std::array<std::byte, 65536> buf{};
    while (out.size() < n) {
      std::size_t at = 0;
      while (out.size() < n) {
        auto r = parse_reply(pending_, at);
        if (!r) break;
        out.push_back(std::move(*r));
      }
      pending_.erase(0, at);
      if (out.size() == n) break;
      const std::size_t got = co_await stream_.read_some(buf);
      if (got == 0) throw std::runtime_error("the server closed the connection");
      pending_.append(reinterpret_cast<const char*>(buf.data()), got);  // NOLINT: bytes as chars
    }
    co_return out;
  }

  anydefer::deferred<bool> wait_end() {
    std::array<std::byte, 4096> buf{};
    for (;;) {
      std::size_t got = 0;
      try {
        got = co_await stream_.read_some(buf);
      } catch (const std::system_error&) {
        co_return true;  // reset: closed too
      }
      if (got == 0) co_return true;
    }
  }

  anydefer::reactor loop_;
  anydefer::net::tcp_stream stream_;
  std::string pending_;
};

}  // namespace resp_test
