// anydefer::grpc: unary calls, server-streaming reads and deferred handlers, against the Echo service over
// 127.0.0.1 (in process, and once with the server in a second process).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "anydefer/anydefer.hpp"
#include "anydefer/detail/sync/sanitizers.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/thread_pool.hpp"
#include "anydefer/executors/timers.hpp"
#include "anydefer/grpc/client.hpp"
#include "anydefer/grpc/server.hpp"
#include "anydefer/grpc/status.hpp"
#include "echo_service.hpp"

namespace {

using namespace std::chrono_literals;
using anydefer_test::Echo;
using anydefer_test::echo_server;
using anydefer_test::EchoReply;
using anydefer_test::EchoRequest;

EchoRequest request(const std::string& text, EchoRequest::Mode mode = EchoRequest::REPLY) {
  EchoRequest r;
  r.set_text(text);
  r.set_mode(mode);
  return r;
}

// The status code of the grpc_error `d` failed with (and its message in `message`); fails the test otherwise.
template <class T>
grpc::StatusCode code_of(anydefer::deferred<T> d, std::string* message = nullptr) {
  try {
    d.get();
  } catch (const anydefer::grpc::grpc_error& e) {
    if (message != nullptr) *message = e.message();
    return e.code();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a grpc_error: " << e.what();
    return grpc::StatusCode::OK;
  }
  ADD_FAILURE() << "the call did not fail";
  return grpc::StatusCode::OK;
}

// A gRPC call costs some 50 ms under ThreadSanitizer (its interceptors in gRPC's own threads): that lane checks
// 200, the others 10,000.
#ifdef ANYDEFER_DETAIL_TSAN
constexpr int many_calls = 200;
#else
constexpr int many_calls = 10'000;
#endif
// Deadlines a call reaches its handler well within (on the connected channel), in every lane.
#ifdef ANYDEFER_DETAIL_SANITIZED
constexpr std::chrono::milliseconds short_deadline{500};
#else
constexpr std::chrono::milliseconds short_deadline{50};
#endif

// Waits until gRPC has released every call (see anydefer::grpc::calls_in_flight()): before a channel goes.
void wait_for_calls_to_end() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (anydefer::grpc::calls_in_flight() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(anydefer::grpc::calls_in_flight(), 0) << "calls left in flight";
}

class GrpcTest : public ::testing::Test {
 protected:
  GrpcTest()
      : channel_(grpc::CreateChannel(server_.target(), grpc::InsecureChannelCredentials())),
        stub_(Echo::NewStub(channel_)) {
    loop_.start();
    // Connected before the test starts, so that no deadline of a test is spent on the connection.
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      ADD_FAILURE() << "the channel to " << server_.target() << " did not connect";
    }
  }
  ~GrpcTest() override {
    wait_for_calls_to_end();  // before the channel and the loop go
    loop_.stop();
  }

  anydefer::deferred<EchoReply> say(EchoRequest r, const anydefer::grpc::call_options& options = {}) {
    return anydefer::grpc::call(stub_->async(), &Echo::Stub::async::Say, std::move(r), options);
  }
  anydefer::grpc::stream_reader<EchoReply> count(const std::string& text, int n, EchoRequest::Mode mode, int code = 0,
                                                 const anydefer::grpc::call_options& options = {}) {
    EchoRequest r = request(text, mode);
    r.set_count(n);
    r.set_code(code);
    return anydefer::grpc::read_stream(stub_->async(), &Echo::Stub::async::Count, std::move(r), options);
  }

  echo_server server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Echo::Stub> stub_;
  anydefer::reactor loop_;
};

// --- unary calls ---------------------------------------------------------------------------------------------

TEST_F(GrpcTest, AUnaryCallFiresWithTheResponse) { EXPECT_EQ(say(request("hello")).get().text(), "hello"); }

TEST_F(GrpcTest, TheDeferredFiresOnTheNamedExecutor) {
  // Each handler waits until the test answers it, after the callback is attached (a callback attached after the
  // deferred fired would run at once, on the attaching thread).
  int handlers = 0;
  auto held_then_answered = [&](anydefer::deferred<bool> attached) {
    EXPECT_TRUE(server_.service().never_started().wait_for(++handlers, 10s)) << "the handler was not called";
    EXPECT_EQ(server_.service().answer_the_waiting("now"), 1);
    return attached.get();
  };
  anydefer::thread_pool pool(2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(held_then_answered(
        say(request("held", EchoRequest::NEVER), {.executor = pool}).add_callback([&](const EchoReply&) {
          return pool.running_in_this_thread();
        })));
    EXPECT_TRUE(held_then_answered(
        say(request("held", EchoRequest::NEVER), {.executor = loop_}).add_callback([&](const EchoReply&) {
          return loop_.running_in_this_thread();
        })));
  }
  // Without an executor: a gRPC thread, neither the caller nor ours.
  const auto caller = std::this_thread::get_id();
  EXPECT_TRUE(held_then_answered(say(request("held", EchoRequest::NEVER)).add_callback([&](const EchoReply&) {
    return std::this_thread::get_id() != caller && !pool.running_in_this_thread() && !loop_.running_in_this_thread();
  })));
}

TEST_F(GrpcTest, ACoroutineAwaitsCallsOnAReactor) {
  auto run = [&]() -> anydefer::deferred<std::string> {
    co_await anydefer::resume_on(loop_);
    std::string all;
    for (const char* word : {"a", "b", "c"}) {
      EchoReply r = co_await say(request(word), {.executor = loop_});
      EXPECT_TRUE(loop_.running_in_this_thread());
      all += r.text();
    }
    co_return all;
  };
  EXPECT_EQ(run().get(), "abc");
}

TEST_F(GrpcTest, AStatusOtherThanOkIsAGrpcErrorWithItsCode) {
  EchoRequest r = request("x", EchoRequest::FAIL);
  r.set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
  std::string message;
  EXPECT_EQ(code_of(say(r), &message), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(message, "asked to fail: x");
  try {
    say(r).get();
  } catch (const anydefer::grpc::grpc_error& e) {
    EXPECT_STREQ(e.what(), "NOT_FOUND: asked to fail: x");
  }
}

TEST_F(GrpcTest, AHandlerThatThrowsOrFailsWithAnotherExceptionIsInternal) {
  std::string message;
  EXPECT_EQ(code_of(say(request("t", EchoRequest::THROW)), &message), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(message, "handler threw: t");
  EXPECT_EQ(code_of(say(request("s", EchoRequest::FAIL_STD)), &message), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(message, "out of range: s");
}

TEST_F(GrpcTest, AHandlerCoroutineThatWaitsAnswersLater) {
  EchoRequest r = request("later", EchoRequest::DELAY);
  r.set_delay_ms(30);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(say(r).get().text(), "later");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
}

TEST_F(GrpcTest, ADeadlineFailsTheCallAndCancelsTheHandler) {
  EXPECT_EQ(code_of(say(request("n", EchoRequest::NEVER), {.timeout = short_deadline})),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(server_.service().handler_cancels().wait_for(1, 10s));
}

TEST_F(GrpcTest, CancelFailsAtOnceAndReachesTheServer) {
  auto d = say(request("n", EchoRequest::NEVER));
  ASSERT_TRUE(server_.service().never_started().wait_for(1, 10s));
  d.cancel();
  EXPECT_TRUE(d.fired());
  EXPECT_THROW(d.get(), anydefer::cancelled_error);
  EXPECT_TRUE(server_.service().handler_cancels().wait_for(1, 10s));
}

TEST_F(GrpcTest, CancelFromAnotherThreadWhileTheCallRuns) {
  anydefer::thread_pool pool(2);
  std::vector<anydefer::deferred<EchoReply>> calls;
  for (int i = 0; i < 50; ++i) calls.push_back(say(request("n", EchoRequest::NEVER), {.executor = pool}));
  ASSERT_TRUE(server_.service().never_started().wait_for(50, 10s));  // every call reached its handler
  auto cancelled = anydefer::submit(pool, [&] {
    for (auto& d : calls) d.cancel();
  });
  cancelled.get();
  for (auto& d : calls) EXPECT_THROW(d.get(), anydefer::cancelled_error);
  EXPECT_TRUE(server_.service().handler_cancels().wait_for(50, 10s)) << server_.service().handler_cancels().value();
  wait_for_calls_to_end();  // before the pool goes: gRPC completes cancelled calls later
}

// cancel() from a pool worker racing the response: each call ends once, with its reply or with cancelled_error.
TEST_F(GrpcTest, CancelRacingTheResponseEndsEachCallOnce) {
  anydefer::thread_pool pool(2);
  int replied = 0;
  int cancelled = 0;
  for (int round = 0; round < many_calls / 20; ++round) {
    std::vector<anydefer::deferred<EchoReply>> calls;
    std::vector<anydefer::deferred<void>> cancels;
    for (int i = 0; i < 10; ++i) {
      calls.push_back(say(request("r"), {.executor = pool}));
      cancels.push_back(anydefer::submit(pool, [d = calls.back()]() mutable { d.cancel(); }));
    }
    for (auto& c : cancels) c.get();
    for (auto& d : calls) {
      try {
        EXPECT_EQ(d.get().text(), "r");
        ++replied;
      } catch (const anydefer::cancelled_error&) {
        ++cancelled;
      }
    }
  }
  EXPECT_EQ(replied + cancelled, many_calls / 2);
  wait_for_calls_to_end();  // before the pool goes: gRPC completes cancelled calls later
}

TEST_F(GrpcTest, AddTimeoutCancelsTheCall) {
  auto d = anydefer::add_timeout(say(request("n", EchoRequest::NEVER)), short_deadline, loop_);
  EXPECT_THROW(d.get(), anydefer::timeout_error);
  EXPECT_TRUE(server_.service().handler_cancels().wait_for(1, 10s));
}

TEST_F(GrpcTest, AHandlerThatWaitsIsCancelledWithTheCall) {
  EchoRequest r = request("slow", EchoRequest::DELAY);
  r.set_delay_ms(60'000);
  EXPECT_EQ(code_of(say(r, {.timeout = short_deadline})), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The coroutine saw cancelled_error at its co_await and finished: nothing is left pending on the server.
}

TEST_F(GrpcTest, AnUnavailableServerIsUnavailable) {
  // A port that was just free: nobody listens there.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(ntohs(a.sin_port)), grpc::InsecureChannelCredentials());
  auto stub = Echo::NewStub(channel);
  auto d = anydefer::grpc::call(stub->async(), &Echo::Stub::async::Say, request("x"), {.timeout = 10s});
  EXPECT_EQ(code_of(std::move(d)), grpc::StatusCode::UNAVAILABLE);
  wait_for_calls_to_end();  // before this test's channel goes
}

TEST_F(GrpcTest, AThrowingConfigureThrowsAndMakesNoCall) {
  bool configured = false;
  anydefer::grpc::call_options options;
  options.configure = [&](grpc::ClientContext& context) {
    context.AddMetadata("x-test", "1");
    configured = true;
    throw std::invalid_argument("bad metadata");
  };
  EXPECT_THROW(say(request("x"), options), std::invalid_argument);
  EXPECT_TRUE(configured);
  EXPECT_THROW(count("x", 1, EchoRequest::REPLY, 0, options), std::invalid_argument);
}

TEST_F(GrpcTest, AnExecutorThatStoppedFailsTheCall) {
  anydefer::reactor stopped;
  stopped.start();
  stopped.stop();
  EXPECT_THROW(say(request("x"), {.executor = stopped}).get(), anydefer::executor_stopped_error);
}

// --- server-streaming reads ----------------------------------------------------------------------------------

TEST_F(GrpcTest, AStreamIsReadOneMessageAtATimeThenEnds) {
  auto reader = count("m", 5, EchoRequest::REPLY, 0, {.executor = loop_});
  auto read_all = [&]() -> anydefer::deferred<std::vector<int>> {
    // On the loop from the start: a next() that fired before it was awaited continues where the coroutine is.
    co_await anydefer::resume_on(loop_);
    std::vector<int> seen;
    while (std::optional<EchoReply> r = co_await reader.next()) {
      EXPECT_TRUE(loop_.running_in_this_thread());
      EXPECT_EQ(r->text(), "m");
      seen.push_back(r->index());
    }
    co_return seen;
  };
  EXPECT_EQ(read_all().get(), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(reader.next().get(), std::nullopt);  // and again after the end
}

TEST_F(GrpcTest, AnEmptyStreamEndsAtOnce) {
  auto reader = count("e", 0, EchoRequest::REPLY);
  EXPECT_EQ(reader.next().get(), std::nullopt);
}

TEST_F(GrpcTest, AStreamThatEndsWithAnErrorFailsTheNextAfterItsMessages) {
  auto reader = count("f", 3, EchoRequest::REPLY, static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(reader.next().get()->index(), i);
  std::string message;
  EXPECT_EQ(code_of(reader.next(), &message), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(message, "stream failed: f");
  EXPECT_EQ(code_of(reader.next()), grpc::StatusCode::RESOURCE_EXHAUSTED);  // every later next() too
}

TEST_F(GrpcTest, OneNextAtATime) {
  auto reader = count("w", 1, EchoRequest::NEVER);
  EXPECT_EQ(reader.next().get()->index(), 0);
  auto pending = reader.next();  // the server sends nothing more
  EXPECT_THROW(reader.next(), std::logic_error);
  reader.cancel();
  EXPECT_THROW(pending.get(), anydefer::cancelled_error);
  anydefer::grpc::stream_reader<EchoReply> moved = std::move(reader);
  EXPECT_THROW(reader.next(), std::logic_error);  // NOLINT(bugprone-use-after-move): what the test checks
}

TEST_F(GrpcTest, CancellingAPendingNextCancelsTheStream) {
  auto reader = count("c", 2, EchoRequest::NEVER);
  EXPECT_EQ(reader.next().get()->index(), 0);
  EXPECT_EQ(reader.next().get()->index(), 1);
  auto pending = reader.next();
  pending.cancel();
  EXPECT_THROW(pending.get(), anydefer::cancelled_error);
  EXPECT_TRUE(server_.service().stream_cancels().wait_for(1, 10s));
  EXPECT_EQ(code_of(reader.next()), grpc::StatusCode::CANCELLED);
}

TEST_F(GrpcTest, ADeadlineEndsAStream) {
  auto reader = count("d", 1, EchoRequest::NEVER, 0, {.timeout = 2 * short_deadline});
  EXPECT_EQ(reader.next().get()->index(), 0);
  EXPECT_EQ(code_of(reader.next()), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(GrpcTest, DroppingAReaderMidStreamCancelsTheCall) {
  {
    auto reader = count("x", 3, EchoRequest::NEVER);
    EXPECT_EQ(reader.next().get()->index(), 0);
  }
  EXPECT_TRUE(server_.service().stream_cancels().wait_for(1, 10s));
  anydefer::deferred<std::optional<EchoReply>> pending;
  {
    auto reader = count("y", 1, EchoRequest::NEVER);
    EXPECT_EQ(reader.next().get()->index(), 0);
    pending = reader.next();
  }
  // Dropped with a read in flight: dropping is a cancel.
  EXPECT_THROW(pending.get(), anydefer::cancelled_error);
  EXPECT_TRUE(server_.service().stream_cancels().wait_for(2, 10s));
}

// --- many at once --------------------------------------------------------------------------------------------

TEST_F(GrpcTest, TenThousandConcurrentCallsFromThePoolLoseNothing) {
  anydefer::thread_pool pool(2);
  constexpr int calls = many_calls;
  std::vector<anydefer::deferred<EchoReply>> replies;
  replies.reserve(calls);
  std::vector<anydefer::deferred<void>> started;
  std::mutex mu;
  for (int batch = 0; batch < 100; ++batch) {
    started.push_back(anydefer::submit(pool, [&, batch] {
      std::vector<anydefer::deferred<EchoReply>> mine;
      for (int i = batch * (calls / 100); i < (batch + 1) * (calls / 100); ++i) {
        mine.push_back(say(request(std::to_string(i)), {.executor = pool}));
      }
      std::lock_guard lock(mu);
      for (auto& d : mine) replies.push_back(std::move(d));
    }));
  }
  for (auto& s : started) s.get();
  ASSERT_EQ(replies.size(), static_cast<std::size_t>(calls));
  std::vector<EchoReply> all = anydefer::gather(replies).get();
  std::vector<bool> seen(calls, false);
  for (const EchoReply& r : all) {
    const int i = std::stoi(r.text());
    ASSERT_TRUE(i >= 0 && i < calls);
    EXPECT_FALSE(seen[static_cast<std::size_t>(i)]) << "twice: " << i;
    seen[static_cast<std::size_t>(i)] = true;
  }
}

// --- status mapping ------------------------------------------------------------------------------------------

TEST(GrpcStatus, FailuresMapToStatuses) {
  using anydefer::grpc::status_of;
  const auto of = [](auto e) { return status_of(std::make_exception_ptr(e)); };
  const grpc::Status own = of(anydefer::grpc::grpc_error(grpc::StatusCode::ABORTED, "why", "details"));
  EXPECT_EQ(own.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(own.error_message(), "why");
  EXPECT_EQ(own.error_details(), "details");
  EXPECT_EQ(of(anydefer::cancelled_error()).error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(of(anydefer::timeout_error()).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(of(std::runtime_error("boom")).error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(of(std::runtime_error("boom")).error_message(), "boom");
  EXPECT_EQ(of(42).error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(status_of(nullptr).error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THROW(anydefer::grpc::grpc_error(grpc::Status::OK), std::invalid_argument);
  EXPECT_EQ(anydefer::grpc::code_name(static_cast<grpc::StatusCode>(99)), "CODE(99)");
  // Copying a grpc_error never throws (it shares the status).
  static_assert(std::is_nothrow_copy_constructible_v<anydefer::grpc::grpc_error>);
}

// --- two processes -------------------------------------------------------------------------------------------

// The Echo server as a second process: started with posix_spawn (no fork of a process running gRPC's threads).
class echo_process {
 public:
  echo_process() {
    int fds[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    char* argv[] = {const_cast<char*>(ANYDEFER_GRPC_ECHO_SERVER_BIN), nullptr};  // NOLINT
    const int rc = posix_spawn(&pid_, ANYDEFER_GRPC_ECHO_SERVER_BIN, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
    if (rc != 0) throw std::runtime_error("posix_spawn: " + std::to_string(rc));
    char line[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    if (std::fgets(line, sizeof line, out_) != nullptr) {
      const std::string text(line);
      const std::string prefix = "listening on ";
      if (text.rfind(prefix, 0) == 0) target_ = text.substr(prefix.size(), text.find('\n') - prefix.size());
    }
  }
  echo_process(const echo_process&) = delete;
  echo_process& operator=(const echo_process&) = delete;
  ~echo_process() {
    if (pid_ > 0) stop();
    if (out_ != nullptr) std::fclose(out_);
  }
  const std::string& target() const { return target_; }
  // SIGTERM; returns the exit status (128 + signal if it was killed).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string target_;
};

TEST(GrpcTwoProcesses, CallsAndErrorsCrossProcesses) {
  echo_process server;
  ASSERT_FALSE(server.target().empty());
  auto stub = Echo::NewStub(grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  anydefer::thread_pool pool(2);
  const auto say = [&](EchoRequest r, anydefer::grpc::call_options o = {}) {
    o.executor = pool;
    return anydefer::grpc::call(stub->async(), &Echo::Stub::async::Say, std::move(r), o);
  };
  std::vector<anydefer::deferred<EchoReply>> many;
  for (int i = 0; i < 200; ++i) many.push_back(say(request(std::to_string(i))));
  std::vector<EchoReply> replies = anydefer::gather(many).get();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(replies[static_cast<std::size_t>(i)].text(), std::to_string(i));

  EXPECT_EQ(code_of(say(request("t", EchoRequest::THROW))), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(code_of(say(request("n", EchoRequest::NEVER), {.timeout = short_deadline})),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  auto cancelled = say(request("n", EchoRequest::NEVER));
  cancelled.cancel();
  EXPECT_THROW(cancelled.get(), anydefer::cancelled_error);

  auto reader = anydefer::grpc::read_stream(stub->async(), &Echo::Stub::async::Count, [] {
    EchoRequest r = request("s");
    r.set_count(3);
    return r;
  }());
  int n = 0;
  while (reader.next().get()) ++n;
  EXPECT_EQ(n, 3);

  EXPECT_EQ(server.stop(), 0);
  // The server is gone: the next call is UNAVAILABLE, not a hang.
  EXPECT_EQ(code_of(say(request("x"), {.timeout = 10s})), grpc::StatusCode::UNAVAILABLE);
  wait_for_calls_to_end();  // before this test's channel goes
}

}  // namespace
