// A TCP echo server and its clients over loopback, written as deferred coroutines on Asio sockets through
// anydefer::use_deferred; plus a read that times out and a read that is cancelled.
#include <gtest/gtest.h>

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "anydefer/asio/use_deferred.hpp"
#include "anydefer/combinators.hpp"
#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/timers.hpp"

namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;

constexpr int kClients = 4;
constexpr int kMessagesPerClient = 2500;  // 10,000 round trips in all
constexpr std::size_t kMessageSize = 32;

tcp::endpoint loopback_any_port() { return {asio::ip::make_address("127.0.0.1"), 0}; }

// A fixed-size message naming its client and sequence number, so a misrouted or reordered reply is caught.
std::string message(int client, int i) {
  std::array<char, kMessageSize + 1> text{};
  std::snprintf(text.data(), text.size(), "client %d message %06d", client, i);
  std::string out(text.data());
  out.resize(kMessageSize, '.');
  return out;
}

bool is_eof(const std::system_error& e) { return e.code() == asio::error::eof; }

// Echoes what it reads until the peer closes its sending side.
anydefer::deferred<void> echo_session(tcp::socket socket) {
  std::array<char, 1024> buffer{};
  for (;;) {
    std::size_t n = 0;
    try {
      n = co_await socket.async_read_some(asio::buffer(buffer), anydefer::use_deferred);
    } catch (const std::system_error& e) {
      if (!is_eof(e)) throw;
    }
    if (n == 0) co_return;  // eof: the client is done
    co_await asio::async_write(socket, asio::buffer(buffer.data(), n), anydefer::use_deferred);
  }
}

// Accepts `sessions` connections and echoes on each; fires when every session ended.
anydefer::deferred<void> serve(tcp::acceptor& acceptor, int sessions) {
  std::vector<anydefer::deferred<void>> running;
  for (int i = 0; i < sessions; ++i) {
    tcp::socket socket = co_await acceptor.async_accept(anydefer::use_deferred);
    running.push_back(echo_session(std::move(socket)));
  }
  co_await anydefer::gather(running);
}

struct client_report {
  int sent = 0;
  int matched = 0;
  bool saw_eof = false;
};

// Sends `count` messages one at a time, checking each echo; then closes its side and waits for the server's eof.
anydefer::deferred<client_report> client(asio::io_context& ctx, tcp::endpoint server, int id, int count) {
  tcp::socket socket(ctx);
  co_await socket.async_connect(server, anydefer::use_deferred);
  client_report report;
  std::string reply(kMessageSize, '\0');
  for (int i = 0; i < count; ++i) {
    const std::string sent = message(id, i);
    co_await asio::async_write(socket, asio::buffer(sent), anydefer::use_deferred);
    ++report.sent;
    std::size_t n = co_await asio::async_read(socket, asio::buffer(reply), anydefer::use_deferred);
    if (n == sent.size() && reply == sent) ++report.matched;
  }
  socket.shutdown(tcp::socket::shutdown_send);
  try {
    (void)co_await socket.async_read_some(asio::buffer(reply), anydefer::use_deferred);
  } catch (const std::system_error& e) {
    report.saw_eof = is_eof(e);
  }
  co_return report;
}

TEST(AsioEchoTest, FourClientsExchangeTenThousandMessages) {
  asio::io_context ctx;
  tcp::acceptor acceptor(ctx, loopback_any_port());
  anydefer::deferred<void> server = serve(acceptor, kClients);
  std::vector<anydefer::deferred<client_report>> clients;
  for (int c = 0; c < kClients; ++c) clients.push_back(client(ctx, acceptor.local_endpoint(), c, kMessagesPerClient));

  // Two threads run the io_context; run() returns by itself once every coroutine finished (no work left). The
  // time limit only bounds a broken run.
  std::thread second([&ctx] { ctx.run_for(20s); });
  ctx.run_for(20s);
  second.join();

  ASSERT_TRUE(server.fired());
  EXPECT_NO_THROW(server.get());
  int total = 0;
  for (int c = 0; c < kClients; ++c) {
    ASSERT_TRUE(clients[c].fired()) << "client " << c;
    client_report r = clients[c].get();
    EXPECT_EQ(r.sent, kMessagesPerClient) << "client " << c;
    EXPECT_EQ(r.matched, kMessagesPerClient) << "client " << c;
    EXPECT_TRUE(r.saw_eof) << "client " << c;
    total += r.matched;
  }
  EXPECT_EQ(total, kClients * kMessagesPerClient);
}

// A connected pair of sockets on one io_context run by its own thread; the server side never writes unless told.
class silent_peer {
 public:
  silent_peer() : acceptor_(ctx, loopback_any_port()), client(ctx) {
    anydefer::deferred<tcp::socket> accepted = acceptor_.async_accept(anydefer::use_deferred);
    thread_ = std::thread([this] { ctx.run(); });
    client.connect(acceptor_.local_endpoint());  // before any operation of the io thread uses `client`
    server = accepted.get();
  }
  ~silent_peer() {
    work_.reset();
    // Closing on the io thread: the sockets' operations run there.
    asio::post(ctx, [this] {
      asio::error_code ignored;
      client.close(ignored);
      server.close(ignored);
    });
    thread_.join();
  }
  silent_peer(const silent_peer&) = delete;
  silent_peer& operator=(const silent_peer&) = delete;

  asio::io_context ctx;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> work_{ctx.get_executor()};
  tcp::acceptor acceptor_;

 public:
  tcp::socket client;
  tcp::socket server{ctx};

 private:
  std::thread thread_;
};

TEST(AsioEchoTest, ReadWithoutReplyTimesOutThroughAddTimeout) {
  silent_peer peer;
  anydefer::reactor loop;
  loop.start();
  std::array<char, 16> buffer{};

  auto started = std::chrono::steady_clock::now();
  anydefer::deferred<std::size_t> read = peer.client.async_read_some(asio::buffer(buffer), anydefer::use_deferred);
  anydefer::deferred<std::size_t> timed = anydefer::add_timeout(read, 50ms, loop);

  // The timeout cancels the read; Asio aborts it; the cancelled_error becomes timeout_error.
  EXPECT_THROW(timed.get(), anydefer::timeout_error);
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_GE(elapsed, 50ms);
  EXPECT_LT(elapsed, 5s);
}

TEST(AsioEchoTest, ReadRacedAgainstATimerLosesAndIsCancelled) {
  silent_peer peer;
  asio::steady_timer timer(peer.ctx, 20ms);
  std::array<char, 16> buffer{};

  std::vector<anydefer::deferred<std::size_t>> contenders;
  contenders.push_back(peer.client.async_read_some(asio::buffer(buffer), anydefer::use_deferred));
  contenders.push_back(timer.async_wait(anydefer::use_deferred).add_callback([] { return std::size_t{0}; }));
  auto first = anydefer::race(contenders);

  EXPECT_EQ(first.get().first, 1u);  // the timer; race() then cancels the read
}

TEST(AsioEchoTest, CancellingAPendingReadFailsItWithCancelledError) {
  silent_peer peer;
  std::array<char, 16> buffer{};
  anydefer::deferred<std::size_t> read = peer.client.async_read_some(asio::buffer(buffer), anydefer::use_deferred);
  std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(read.fired());  // no data will ever come

  read.cancel();

  // Documented: an Asio operation aborted by the deferred's own cancel() fails with anydefer::cancelled_error
  // (std::system_error(operation_aborted) is what other causes of abortion give).
  EXPECT_THROW(read.get(), anydefer::cancelled_error);
}

TEST(AsioEchoTest, SocketStaysUsableAfterACancelledRead) {
  silent_peer peer;
  std::array<char, 16> buffer{};
  anydefer::deferred<std::size_t> read = peer.client.async_read_some(asio::buffer(buffer), anydefer::use_deferred);
  read.cancel();
  EXPECT_THROW(read.get(), anydefer::cancelled_error);

  // The cancellation aborted that one operation, not the connection.
  anydefer::deferred<std::size_t> next = peer.client.async_read_some(asio::buffer(buffer), anydefer::use_deferred);
  anydefer::deferred<std::size_t> wrote =
      asio::async_write(peer.server, asio::buffer("ping", 4), anydefer::use_deferred);
  EXPECT_EQ(wrote.get(), 4u);
  EXPECT_EQ(next.get(), 4u);
  EXPECT_EQ(std::string(buffer.data(), 4), "ping");
}

}  // namespace
