// resp_epoll_floor: the floor for B10. One thread, one epoll loop written directly on the system calls, parsing
// requests with the same RESP parser as resp_server and answering each with a canned reply ("+OK", "+PONG", or an
// empty array for CONFIG/COMMAND), with no keyspace, no deferred and no reactor. Idle, it polls epoll for 20 us
// without blocking before it sleeps, as the reactors do. resp_server's cost per request above this is what the
// deferreds, the reactor and the keyspace cost.
//
//   resp_epoll_floor [--bind 127.0.0.1] [--port 6379]
//
// Prints "resp_epoll_floor: listening on ADDRESS:PORT" once it listens; SIGINT/SIGTERM stop it (exit 0).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "floor.hpp"
#include "resp.hpp"

namespace {

struct connection {
  resp::input_buffer in;
  resp::parser parser;
  std::string out;
};

}  // namespace

int main(int argc, char** argv) {
  std::string bind = "127.0.0.1";
  unsigned long port = 6379;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    if (arg == "--bind") {
      bind = argv[i + 1];
    } else if (arg == "--port") {
      port = std::strtoul(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "resp_epoll_floor: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  const auto [listener, address] = resp::floor::listen_on("resp_epoll_floor", bind, port, SOCK_NONBLOCK);
  const int signal_fd = resp::floor::stop_signal_fd(SFD_NONBLOCK);

  const int poller = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  ::epoll_ctl(poller, EPOLL_CTL_ADD, listener, &ev);
  ev.data.fd = signal_fd;
  ::epoll_ctl(poller, EPOLL_CTL_ADD, signal_fd, &ev);
  std::printf("resp_epoll_floor: listening on %s\n", address.c_str());
  std::fflush(stdout);

  std::unordered_map<int, std::unique_ptr<connection>> connections;
  const auto drop = [&](int fd) {
    ::close(fd);  // also leaves the epoll set
    connections.erase(fd);
  };
  epoll_event events[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  for (;;) {
    int n = ::epoll_wait(poller, events, 256, 0);
    if (n == 0) {
      const auto until = std::chrono::steady_clock::now() + resp::floor::idle_poll;
      while (n == 0 && std::chrono::steady_clock::now() < until) n = ::epoll_wait(poller, events, 256, 0);
      if (n == 0) n = ::epoll_wait(poller, events, 256, -1);
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == signal_fd) {
        for (auto& [cfd, c] : connections) ::close(cfd);
        std::printf("resp_epoll_floor: stopped\n");
        return 0;
      }
      if (fd == listener) {
        for (;;) {
          const int cfd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          const int one = 1;
          ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = cfd;
          ::epoll_ctl(poller, EPOLL_CTL_ADD, cfd, &cev);
          connections.emplace(cfd, std::make_unique<connection>());
        }
        continue;
      }
      connection& c = *connections.at(fd);
      const ssize_t got = ::recv(fd, c.in.prepare(16384), 16384, 0);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(fd);
        continue;
      }
      c.in.commit(static_cast<std::size_t>(got));
      const bool keep = resp::floor::answer(c.in, c.parser, c.out);
      // Replies are small and the client reads them: a blocking-free send that takes them whole, as Redis's
      // own write before it sleeps; a partial send (a client not reading) drops the connection here.
      const ssize_t sent = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      const bool whole = sent == static_cast<ssize_t>(c.out.size());
      c.out.clear();
      if (!keep || !whole) drop(fd);
    }
  }
}
