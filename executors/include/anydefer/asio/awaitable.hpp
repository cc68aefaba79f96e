// anydefer/asio/awaitable.hpp: waiting for a deferred from Asio code: an asynchronous operation that completes
// when a deferred fires, usable with any completion token, and co_await from asio::awaitable coroutines.
//
//   asio::awaitable<void> handler(anydefer::deferred<int> d) {
//     int v = co_await anydefer::as_awaitable(d);           // d's failure is thrown here, as its own exception
//     ...
//   }
//   anydefer::async_wait(d, [](std::exception_ptr e, int v) { ... });   // any Asio completion token
//
// Why a bridge: asio::awaitable coroutines only co_await Asio's own awaitables (awaitable_frame::await_transform
// accepts nothing else), so `co_await d` does not compile there. anydefer::async_wait is an ordinary Asio
// asynchronous operation (asio::async_initiate): it continues `d` (add_both) and, when `d` fires, posts the
// completion handler to the handler's associated executor, never invoking it inline, as Asio requires. Until
// then it holds outstanding work on that executor, so io_context::run() keeps running while a deferred is awaited.
//
// Consumes `d`: async_wait / as_awaitable become its one consumer. A deferred that already has a consumer, or an
// empty handle, completes the operation with already_continued_error / empty_deferred_error.
// Cancelling the Asio side (the awaitable's cancellation slot) does not cancel the deferred: cancel `d` itself.
//
// Memory ordering: everything that happened before `d` fired is visible to the completion handler (the post to
// its executor synchronizes).
//
// Thread-safety: `d` may be fired from any thread; the handler runs on its associated executor.
#pragma once

#include <concepts>
#include <exception>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/use_awaitable.hpp>

#include "anydefer/deferred.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/failure.hpp"

namespace anydefer {
namespace asio_detail {

// How the handler receives the deferred's outcome.
enum class delivery {
  error_first,  // void(std::exception_ptr, T) / void(std::exception_ptr): Asio's usual shape
  as_result,    // void(anydefer::result<T>): no default-constructed T needed on failure
};

template <class T, delivery How>
struct wait_signature;
template <class T>
struct wait_signature<T, delivery::error_first> {
  using type = void(std::exception_ptr, T);
};
template <>
struct wait_signature<void, delivery::error_first> {
  using type = void(std::exception_ptr);
};
template <class T>
struct wait_signature<T, delivery::as_result> {
  using type = void(result<T>);
};

// The continuation added to the deferred: posts the handler, with the outcome, to the handler's executor.
template <class T, delivery How, class Handler, class WorkExecutor>
class post_outcome {
 public:
  post_outcome(Handler&& h, WorkExecutor ex) : handler_(std::move(h)), executor_(std::move(ex)) {}

  void operator()(result<T>&& r) {
    if constexpr (How == delivery::as_result) {
      asio::post(executor_, [h = std::move(handler_), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
    } else if constexpr (std::is_void_v<T>) {
      std::exception_ptr e = r.has_failure() ? r.error().exception() : nullptr;
      asio::post(executor_, [h = std::move(handler_), e = std::move(e)]() mutable { std::move(h)(std::move(e)); });
    } else if (r.has_failure()) {
      asio::post(executor_, [h = std::move(handler_), e = r.error().exception()]() mutable { std::move(h)(e, T{}); });
    } else {
      asio::post(executor_, [h = std::move(handler_), v = std::move(r).value()]() mutable {
        std::move(h)(std::exception_ptr(), std::move(v));
      });
    }
  }

 private:
  Handler handler_;
  WorkExecutor executor_;
};

template <class T, delivery How>
struct initiate_wait {
  template <class Handler>
  void operator()(Handler&& handler, deferred<T> d) const {
    using handler_t = std::decay_t<Handler>;
    // Outstanding work keeps the handler's io_context running until the deferred fires.
    auto ex = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
    post_outcome<T, How, handler_t, decltype(ex)> deliver(std::move(handler), std::move(ex));
    std::exception_ptr misuse;
    if (!d.valid()) {
      misuse = std::make_exception_ptr(empty_deferred_error());
    } else if (detail::access::state_of(d)->is_continued()) {
      misuse = std::make_exception_ptr(already_continued_error());
    }
    if (misuse) {
      deliver(result<T>(failure(std::move(misuse))));
      return;
    }
    (void)d.add_both(std::move(deliver));
  }
};

}  // namespace asio_detail

// An Asio asynchronous operation that completes when `d` fires, with signature void(std::exception_ptr, T)
// (void(std::exception_ptr) for deferred<void>): a null exception_ptr and d's value, or d's failure's exception
// and a value-initialized T. Works with any completion token (use_awaitable, use_future, a callback, ...).
template <class T, class CompletionToken>
  requires(std::is_void_v<T> || std::default_initializable<T>)
auto async_wait(deferred<T> d, CompletionToken&& token) {
  using signature = typename asio_detail::wait_signature<T, asio_detail::delivery::error_first>::type;
  return asio::async_initiate<CompletionToken, signature>(
      asio_detail::initiate_wait<T, asio_detail::delivery::error_first>{}, token, std::move(d));
}

// As async_wait, with signature void(anydefer::result<T>): works for any T, including one that is not default
// constructible.
template <class T, class CompletionToken>
auto async_wait_result(deferred<T> d, CompletionToken&& token) {
  using signature = typename asio_detail::wait_signature<T, asio_detail::delivery::as_result>::type;
  return asio::async_initiate<CompletionToken, signature>(
      asio_detail::initiate_wait<T, asio_detail::delivery::as_result>{}, token, std::move(d));
}

// `co_await anydefer::as_awaitable(d)` inside an asio::awaitable<_, Executor> coroutine: d's value, or d's
// failure's exception thrown at the co_await. The coroutine resumes on its own executor. Lazy: `d` is continued
// when the awaitable is first awaited.
template <class Executor = asio::any_io_executor, class T>
asio::awaitable<T, Executor> as_awaitable(deferred<T> d) {
  result<T> r = co_await async_wait_result(std::move(d), asio::use_awaitable_t<Executor>{});
  co_return std::move(r).value();
}

}  // namespace anydefer
