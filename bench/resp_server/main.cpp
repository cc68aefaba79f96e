// resp_server: the Redis-protocol server of server.hpp as a program.
//
//   resp_server [--bind 127.0.0.1] [--port 6379] [--shards 1] [--pin] [--max-clients 10000]
//               [--max-bulk 536870912] [--max-array 1048576]
//
// --port 0 lets the kernel pick a port. Once it listens it prints "resp_server: listening on ADDRESS:PORT with N
// shards" on stdout. SIGINT or SIGTERM stops it gracefully (every connection closed, the shards joined) and it
// exits 0; a bad option or a port it cannot bind exits 2 with a message.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "server.hpp"

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "resp_server: %s\nusage: resp_server [--bind ADDRESS] [--port N] [--shards N] [--pin] "
               "[--max-clients N] [--max-bulk BYTES] [--max-array N]\n",
               why.c_str());
  std::exit(2);
}

unsigned long long number(std::string_view option, const char* text, unsigned long long max) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || n > max || text[0] == '-') {
    usage(std::string(option) + " needs a number up to " + std::to_string(max) + ", not \"" + text + "\"");
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  resp_server::config c;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--bind") {
      c.bind = value();
    } else if (arg == "--port") {
      c.port = static_cast<std::uint16_t>(number(arg, value(), 65535));
    } else if (arg == "--shards") {
      c.shards = number(arg, value(), 1024);
    } else if (arg == "--pin") {
      c.pin = true;
    } else if (arg == "--max-clients") {
      c.max_clients = number(arg, value(), 1'000'000);
    } else if (arg == "--max-bulk") {
      c.limits.max_bulk = number(arg, value(), std::size_t{1} << 40);
    } else if (arg == "--max-array") {
      c.limits.max_array = number(arg, value(), std::size_t{1} << 31);
    } else if (arg == "--help" || arg == "-h") {
      usage("a Redis-protocol key-value server on anydefer's reactors");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  // Every thread the server starts inherits this mask, so only sigwait() below sees the stop signals.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // writes use MSG_NOSIGNAL; this is for anything else

  try {
    resp_server::server s(c);
    std::printf("resp_server: listening on %s with %zu shards\n", s.local_endpoint().to_string().c_str(), s.shards());
    std::fflush(stdout);
    int received = 0;
    sigwait(&stop_signals, &received);
    s.stop();
    std::printf("resp_server: stopped by %s\n", received == SIGINT ? "SIGINT" : "SIGTERM");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resp_server: %s\n", e.what());
    return 2;
  }
  return 0;
}
