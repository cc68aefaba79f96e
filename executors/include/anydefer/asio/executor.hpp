// anydefer/asio/executor.hpp: an anydefer executor that runs tasks on an Asio executor (standalone Asio).
//
//   asio::io_context io;
//   auto on_io = anydefer::on_asio(io);                        // or on_asio(strand), on_asio(io.get_executor())
//   d.add_callback(on_io, [](int v) { return v + 1; });        // runs on a thread inside io.run()
//   co_await anydefer::resume_on(on_io);                       // a deferred coroutine hops onto the io_context
//
// What it is: a small value (the Asio executor it wraps) satisfying anydefer's `executor` concept. execute(t)
// asio::post()s `t` to the wrapped executor, so t.run() happens on a thread running the io_context (or inside
// the strand), never inline in execute().
//
// Cost: unlike anydefer's own executors, it allocates: asio::post() allocates one operation per task, through
// the posted handler's associated allocator (Asio's per-thread recycling allocator, so usually from a cache).
//
// Rejection: Asio has no "stopped, refuse new work" state. Posting to an io_context that was stop()ped still
// queues the task; it runs if the io_context is restart()ed and run again. A task still queued when the
// io_context is destroyed (or shut down) is destroyed by Asio without running; the posted handler then rejects
// it with executor_stopped_error, so the deferred waiting on it fails instead of hanging: no task is lost. That
// rejection runs on the thread destroying the io_context, during its destruction, so the continuation that
// fails must not use Asio objects of that io_context. If asio::post() itself throws (out of memory), the task
// is rejected inline with executor_stopped_error.
//
// Lifetime: `executor_ref` points at the asio_executor object, so keep the object (not only the io_context)
// alive while links may be scheduled on it. The io_context must outlive every execute() call.
//
// Thread-safety: execute() may be called from any thread concurrently, as asio::post() may.
#pragma once

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include <asio/execution_context.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"

namespace anydefer {
namespace asio_detail {

// The handler posted for one task: runs it, or, if Asio destroys it without running it (io_context shut down),
// rejects it. Move-only; a moved-from handler owns nothing.
class posted_task {
 public:
  explicit posted_task(task& t) noexcept : task_(&t) {}
  posted_task(posted_task&& other) noexcept : task_(std::exchange(other.task_, nullptr)) {}
  posted_task(const posted_task&) = delete;
  posted_task& operator=(const posted_task&) = delete;
  posted_task& operator=(posted_task&&) = delete;
  ~posted_task() {
    if (task_ != nullptr) reject(*task_);
  }

  void operator()() noexcept { std::exchange(task_, nullptr)->run(); }

  static void reject(task& t) noexcept {
    std::exception_ptr why;
    try {
      why = std::make_exception_ptr(
          executor_stopped_error("anydefer: the Asio executor destroyed the task without running it"));
    } catch (...) {
      why = std::current_exception();
    }
    t.reject(std::move(why));
  }

 private:
  task* task_;
};

}  // namespace asio_detail

// Runs anydefer tasks on an Asio executor `Ex` (io_context::executor_type, a strand, any_io_executor, ...).
template <class Ex>
class asio_executor {
 public:
  using inner_executor_type = Ex;

  explicit asio_executor(Ex ex) noexcept(std::is_nothrow_move_constructible_v<Ex>) : ex_(std::move(ex)) {}

  // Posts `t` to the Asio executor. Never runs it inline, never throws. Thread-safe. Allocates (inside Asio).
  void execute(task& t) noexcept {
    try {
      // If post() throws, the handler was destroyed on the way out (the temporary, or the half-built operation
      // that took it over): its destructor already rejected `t`. Nothing more to do.
      asio::post(ex_, asio_detail::posted_task(t));
    } catch (...) {  // NOLINT(bugprone-empty-catch): see above
    }
  }

  const Ex& get_inner_executor() const noexcept { return ex_; }

 private:
  Ex ex_;
};

// asio_executor for an Asio executor.
template <class Ex>
  requires(!std::is_base_of_v<asio::execution_context, std::remove_cvref_t<Ex>>)
asio_executor<std::decay_t<Ex>> on_asio(Ex&& ex) { return asio_executor<std::decay_t<Ex>>(std::forward<Ex>(ex)); }

// asio_executor for an io_context (its executor).
inline asio_executor<asio::io_context::executor_type> on_asio(asio::io_context& io) {
  return asio_executor<asio::io_context::executor_type>(io.get_executor());
}

}  // namespace anydefer
