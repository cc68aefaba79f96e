// The Echo service of tests/grpc/echo.proto, served with anydefer::grpc::serve() (unary) and gRPC's own
// ServerWriteReactor (the Count stream), and a server on 127.0.0.1 with an ephemeral port. Used by the tests and
// by the program tests/grpc/server/echo_server_main.cpp (the second process of the two-process test).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/timers.hpp"
#include "anydefer/grpc/server.hpp"
#include "anydefer/grpc/status.hpp"
#include "echo.grpc.pb.h"

namespace anydefer_test {

using anydefer::test::Echo;
using anydefer::test::EchoReply;
using anydefer::test::EchoRequest;

inline EchoReply reply_of(const std::string& text, int index = 0) {
  EchoReply r;
  r.set_text(text);
  r.set_index(index);
  return r;
}

// A count a test can wait for (the server's threads raise it).
class event_count {
 public:
  void raise() {
    {
      std::lock_guard lock(mu_);
      ++n_;
    }
    cv_.notify_all();
  }
  int value() const {
    std::lock_guard lock(mu_);
    return n_;
  }
  bool wait_for(int at_least, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return n_ >= at_least; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  int n_ = 0;
};

class echo_service final : public Echo::CallbackService {
 public:
  explicit echo_service(anydefer::reactor& timers) : timers_(timers) {}
  echo_service(const echo_service&) = delete;
  echo_service& operator=(const echo_service&) = delete;
  ~echo_service() override = default;

  grpc::ServerUnaryReactor* Say(grpc::CallbackServerContext* context, const EchoRequest* request,
                                EchoReply* reply) override {
    return anydefer::grpc::serve(context, reply, [this, request] { return answer(*request); });
  }

  grpc::ServerWriteReactor<EchoReply>* Count(grpc::CallbackServerContext* /*context*/,
                                             const EchoRequest* request) override {
    return new count_writer(*this, *request);
  }

  // Unary NEVER handlers called.
  const event_count& never_started() const { return never_started_; }
  // Answers every NEVER handler called so far that has not ended (a cancelled one has) with `text`, from the
  // calling thread; returns how many it answered. A test that must attach callbacks before a reply arrives holds
  // the call this way instead of betting on a delay.
  int answer_the_waiting(const std::string& text) {
    std::vector<anydefer::deferred<EchoReply>> waiting;
    {
      std::lock_guard lock(mu_);
      waiting.swap(never_fired_);
    }
    int answered = 0;
    for (const auto& d : waiting) {
      if (d.fired()) continue;
      d.callback(reply_of(text));
      ++answered;
    }
    return answered;
  }
  // Unary NEVER handlers whose deferred was cancelled (the client cancelled, or its deadline passed).
  const event_count& handler_cancels() const { return handler_cancels_; }
  // Count streams the client cancelled or left.
  const event_count& stream_cancels() const { return stream_cancels_; }

 private:
  anydefer::deferred<EchoReply> answer(const EchoRequest& request) {
    switch (request.mode()) {
      case EchoRequest::REPLY:
        return anydefer::succeed(reply_of(request.text()));
      case EchoRequest::DELAY:
        return delayed(request.text(), std::chrono::milliseconds(request.delay_ms()));
      case EchoRequest::FAIL:
        return anydefer::fail<EchoReply>(anydefer::grpc::grpc_error(static_cast<grpc::StatusCode>(request.code()),
                                                                    "asked to fail: " + request.text()));
      case EchoRequest::THROW:
        throw std::runtime_error("handler threw: " + request.text());
      case EchoRequest::FAIL_STD:
        return anydefer::fail<EchoReply>(std::out_of_range("out of range: " + request.text()));
      case EchoRequest::NEVER: {
        // The producer keeps its handle, as a real one would (a dropped one would fail it as broken).
        anydefer::deferred<EchoReply> d([this](anydefer::deferred<EchoReply>&) { handler_cancels_.raise(); });
        {
          std::lock_guard lock(mu_);
          never_fired_.push_back(d);
        }
        never_started_.raise();
        return d;
      }
      default:
        throw std::invalid_argument("unknown mode " + std::to_string(request.mode()));
    }
  }

  anydefer::deferred<EchoReply> delayed(std::string text, std::chrono::milliseconds delay) {
    co_await anydefer::call_later(timers_, delay);
    co_return reply_of(text);
  }

  // Streams `count` replies, then ends with `code` (NEVER: waits for the client to cancel instead).
  class count_writer final : public grpc::ServerWriteReactor<EchoReply> {
   public:
    count_writer(echo_service& owner, EchoRequest request) : owner_(owner), request_(std::move(request)) {
      std::lock_guard lock(mu_);
      write_next();
    }
    void OnWriteDone(bool ok) override {
      std::lock_guard lock(mu_);
      if (!ok) {
        finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client left"));
        return;
      }
      write_next();
    }
    // A write may complete successfully after OnCancel (it was on the wire already): OnWriteDone(true) then
    // finishes the call, which would otherwise never end (a NEVER stream has nothing more to write) and keep
    // the server's Wait() from returning.
    void OnCancel() override {
      owner_.stream_cancels_.raise();
      std::lock_guard lock(mu_);
      cancelled_ = true;
      if (!writing_) finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    void write_next() {
      writing_ = false;
      if (cancelled_) {
        finish(grpc::Status::CANCELLED);
      } else if (sent_ < request_.count()) {
        reply_ = reply_of(request_.text(), sent_++);
        writing_ = true;
        StartWrite(&reply_);
      } else if (request_.mode() != EchoRequest::NEVER) {
        finish(request_.code() == 0
                   ? grpc::Status::OK
                   : grpc::Status(static_cast<grpc::StatusCode>(request_.code()), "stream failed: " + request_.text()));
      }
    }
    void finish(const grpc::Status& status) {
      if (std::exchange(finished_, true)) return;
      Finish(status);
    }

    echo_service& owner_;
    const EchoRequest request_;
    std::mutex mu_;  // OnCancel may run beside OnWriteDone
    EchoReply reply_;
    int sent_ = 0;
    bool writing_ = false;
    bool cancelled_ = false;
    bool finished_ = false;
  };

  anydefer::reactor& timers_;
  event_count never_started_;
  event_count handler_cancels_;
  event_count stream_cancels_;
  std::mutex mu_;
  std::vector<anydefer::deferred<EchoReply>> never_fired_;
};

// The service on 127.0.0.1 (or `address`), with a reactor for its timers. Shutting down cancels what is pending.
class echo_server {
 public:
  explicit echo_server(const std::string& address = "127.0.0.1:0") : service_(timers_) {
    timers_.start();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) throw std::runtime_error("echo_server: cannot listen on " + address);
  }
  echo_server(const echo_server&) = delete;
  echo_server& operator=(const echo_server&) = delete;
  ~echo_server() {
    server_->Shutdown(std::chrono::system_clock::now());  // cancels the calls still pending
    server_->Wait();
    timers_.stop();
  }

  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  echo_service& service() { return service_; }
  grpc::Server& server() { return *server_; }

 private:
  anydefer::reactor timers_;
  echo_service service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace anydefer_test
