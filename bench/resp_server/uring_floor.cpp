// resp_uring_floor: epoll_floor.cpp's server on io_uring instead of epoll, for B10: one thread, canned replies,
// the same RESP parser, no keyspace, no deferred, no reactor. It measures what io_uring could give the reactors
// on this kernel before they are built on it: every receive and send is a submission, and one system call per
// loop iteration (io_uring_submit_and_get_events()) submits the sends and the next receives of every connection
// that was served and reaps what completed, where the epoll floor makes one recv() and one send() per request
// plus an epoll_wait() per batch. Idle, both poll for 20 us without blocking before they sleep, as the reactors
// do: this one with io_uring_get_events(), then io_uring_submit_and_wait() for one completion.
//
//   resp_uring_floor [--bind 127.0.0.1] [--port 6379] [--multishot]
//
// Receives: by default one recv submission per request, into the connection's own buffer. --multishot: one
// multishot receive per connection that lasts, taking its memory from a ring of provided buffers (kernel 6.0;
// on an older one the default), so the kernel arms no poll per receive; each request is then copied once more.
//
// Prints "resp_uring_floor: listening on ADDRESS:PORT" once it listens; SIGINT/SIGTERM stop it (exit 0). Exits 2
// with a message when io_uring is unavailable (an old kernel, or a sandbox that refuses it).
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include "floor.hpp"
#include "resp.hpp"

namespace {

constexpr std::size_t read_size = 16384;

// What a completion is about: the low bits of its user_data (the pointers are 8-byte aligned).
enum op : std::uintptr_t { op_accept = 1, op_recv = 2, op_send = 3, op_signal = 4 };

struct connection {
  int fd = -1;
  resp::input_buffer in;
  resp::parser parser;
  std::string out;      // being sent (its bytes must stay put until the send completes)
  std::string pending;  // replies made while a send was in flight
  int in_flight = 0;    // submissions not completed yet: the connection is freed only at zero
  bool sending = false;
  bool closing = false;
};

[[noreturn]] void die(const char* what, int error) { resp::floor::die("resp_uring_floor", what, error); }

class server {
 public:
  server(int listener, int signal_fd, bool multishot)
      : multishot_(multishot), listener_(listener), signal_fd_(signal_fd) {
    io_uring_params params{};
    // Completions are reaped only when this one thread enters the kernel for them (submit_and_wait()): no
    // interrupt to run them elsewhere. Older kernels refuse these flags: then plain.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(4096, &ring_, &params);
    if (rc < 0) {
      params = io_uring_params{};
      rc = io_uring_queue_init_params(4096, &ring_, &params);
    }
    if (rc < 0) die("io_uring_queue_init", -rc);
    if (multishot_) setup_buffers();
    io_uring_prep_multishot_accept(sqe(), listener_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(last_, op_accept);
    io_uring_prep_read(sqe(), signal_fd_, &signal_info_, sizeof signal_info_, 0);
    io_uring_sqe_set_data64(last_, op_signal);
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() {
    for (connection* c : connections_) {
      ::close(c->fd);
      delete c;
    }
    io_uring_queue_exit(&ring_);
  }

  // Serves until a stop signal.
  void run() {
    for (;;) {
      submit_and_wait();
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned seen = 0;
      bool stop = false;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        stop = complete(cqe->user_data, cqe->res, cqe->flags) || stop;
      }
      io_uring_cq_advance(&ring_, seen);
      if (stop) return;
    }
  }

 private:
  // Submits what is queued and reaps what completed; with nothing completed, polls for resp::floor::idle_poll
  // (as the epoll floor and the reactors do), then blocks until something completes.
  void submit_and_wait() {
    check(io_uring_submit_and_get_events(&ring_), "io_uring_submit_and_get_events");
    if (io_uring_cq_ready(&ring_) > 0) return;
    const auto until = std::chrono::steady_clock::now() + resp::floor::idle_poll;
    while (io_uring_cq_ready(&ring_) == 0 && std::chrono::steady_clock::now() < until) {
      check(io_uring_get_events(&ring_), "io_uring_get_events");
    }
    if (io_uring_cq_ready(&ring_) == 0) check(io_uring_submit_and_wait(&ring_, 1), "io_uring_submit_and_wait");
  }
  static void check(int rc, const char* what) {
    if (rc < 0 && rc != -EINTR && rc != -EBUSY) die(what, -rc);
  }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s == nullptr) {  // full: hand what is queued to the kernel, then there is room
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    last_ = s;
    return s;
  }

  // Multishot receives take their memory from a ring of provided buffers: one submission per connection serves
  // every request that comes, and the kernel needs no poll re-armed per receive.
  static constexpr unsigned buffer_count = 1024;
  static constexpr unsigned buffer_size = 2048;
  void setup_buffers() {
    void* memory = nullptr;
    if (posix_memalign(&memory, 4096, buffer_count * sizeof(io_uring_buf)) != 0) die("posix_memalign", ENOMEM);
    buffer_ring_ = static_cast<io_uring_buf_ring*>(memory);
    buffers_ = std::make_unique<char[]>(std::size_t{buffer_count} * buffer_size);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(buffer_ring_);
    reg.ring_entries = buffer_count;
    reg.bgid = 0;
    if (const int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
      multishot_ = false;  // an older kernel: one receive per submission
      return;
    }
    io_uring_buf_ring_init(buffer_ring_);
    for (unsigned i = 0; i < buffer_count; ++i) give_back(static_cast<unsigned short>(i));
  }
  void give_back(unsigned short id) {
    io_uring_buf_ring_add(buffer_ring_, buffers_.get() + std::size_t{id} * buffer_size, buffer_size, id,
                          io_uring_buf_ring_mask(buffer_count), 0);
    io_uring_buf_ring_advance(buffer_ring_, 1);
  }

  void post_recv(connection& c) {
    if (multishot_) {
      io_uring_prep_recv_multishot(sqe(), c.fd, nullptr, 0, 0);
      last_->flags |= IOSQE_BUFFER_SELECT;
      last_->buf_group = 0;
    } else {
      io_uring_prep_recv(sqe(), c.fd, c.in.prepare(read_size), read_size, 0);
    }
    io_uring_sqe_set_data64(last_, reinterpret_cast<std::uintptr_t>(&c) | op_recv);
    ++c.in_flight;
  }
  void post_send(connection& c) {
    c.sending = true;
    io_uring_prep_send(sqe(), c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(last_, reinterpret_cast<std::uintptr_t>(&c) | op_send);
    ++c.in_flight;
  }
  // Closes once nothing is in flight; a receive still pending (a multishot one lasts) ends when the socket is
  // shut down.
  void start_closing(connection& c) {
    if (!c.closing) ::shutdown(c.fd, SHUT_RDWR);
    c.closing = true;
    finish_if_idle(c);
  }
  void finish_if_idle(connection& c) {
    if (!c.closing || c.in_flight != 0) return;
    ::close(c.fd);
    connections_.erase(&c);
    delete &c;
  }

  // One completion; true when a stop signal came.
  bool complete(std::uint64_t data, int res, unsigned flags) {
    const auto kind = static_cast<op>(data & 7U);
    if (kind == op_signal) return true;
    if (kind == op_accept) {
      if (res >= 0) {
        const int one = 1;
        ::setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto* c = new connection;
        c->fd = res;
        connections_.insert(c);
        post_recv(*c);
      }
      if ((flags & IORING_CQE_F_MORE) == 0) {  // the multishot accept ended: arm it again
        io_uring_prep_multishot_accept(sqe(), listener_, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(last_, op_accept);
      }
      return false;
    }
    connection& c = *reinterpret_cast<connection*>(data & ~std::uint64_t{7});
    if (kind != op_recv || !multishot_ || (flags & IORING_CQE_F_MORE) == 0) --c.in_flight;
    if (kind == op_send) {
      c.sending = false;
      const bool whole = res == static_cast<int>(c.out.size());  // else an error, or a client not reading
      c.out.clear();
      if (!whole) {
        start_closing(c);
        return false;
      }
      if (!c.closing && !c.pending.empty()) {
        c.out.swap(c.pending);
        post_send(c);
      }
      finish_if_idle(c);
      return false;
    }
    // op_recv
    if (multishot_ && res == -ENOBUFS && !c.closing) {  // every buffer was in use: receive again
      post_recv(c);
      return false;
    }
    if (res <= 0 || c.closing) {
      if (multishot_ && (flags & IORING_CQE_F_BUFFER) != 0) give_back(buffer_of(flags));
      start_closing(c);
      return false;
    }
    if (multishot_) {
      const unsigned short id = buffer_of(flags);
      std::memcpy(c.in.prepare(static_cast<std::size_t>(res)), buffers_.get() + std::size_t{id} * buffer_size,
                  static_cast<std::size_t>(res));
      give_back(id);
    }
    c.in.commit(static_cast<std::size_t>(res));
    std::string& sink = c.sending ? c.pending : c.out;
    const bool keep = resp::floor::answer(c.in, c.parser, sink);
    if (!c.sending && !c.out.empty()) post_send(c);
    if (keep) {
      if (!multishot_ || (flags & IORING_CQE_F_MORE) == 0) post_recv(c);  // a multishot receive goes on by itself
    } else {
      start_closing(c);
    }
    return false;
  }

  static unsigned short buffer_of(unsigned flags) {
    return static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
  }

  io_uring ring_{};
  bool multishot_;
  io_uring_buf_ring* buffer_ring_ = nullptr;
  std::unique_ptr<char[]> buffers_;
  io_uring_sqe* last_ = nullptr;
  int listener_;
  int signal_fd_;
  signalfd_siginfo signal_info_{};
  std::unordered_set<connection*> connections_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string bind = "127.0.0.1";
  unsigned long port = 6379;
  bool multishot = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--multishot") {
      multishot = true;
      continue;
    }
    if (i + 1 == argc) {
      std::fprintf(stderr, "resp_uring_floor: %s needs a value\n", argv[i]);
      return 2;
    }
    if (arg == "--bind") {
      bind = argv[i + 1];
    } else if (arg == "--port") {
      port = std::strtoul(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "resp_uring_floor: unknown option %s\n", argv[i]);
      return 2;
    }
    ++i;
  }
  const auto [listener, address] = resp::floor::listen_on("resp_uring_floor", bind, port, 0);
  const int signal_fd = resp::floor::stop_signal_fd(0);

  server s(listener, signal_fd, multishot);
  std::printf("resp_uring_floor: listening on %s\n", address.c_str());
  std::fflush(stdout);
  s.run();
  std::printf("resp_uring_floor: stopped\n");
  return 0;
}
