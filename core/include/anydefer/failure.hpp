// anydefer/failure.hpp: `failure` (an error travelling down a chain) and `result<T>` (a value or a failure).
//
// `failure` is anydefer's Twisted Failure: it wraps a non-null `std::exception_ptr` and answers the questions an
// errback asks about it without the caller writing try/catch:
//
//   d.add_errback([](anydefer::failure f) -> int {
//     f.trap<std::out_of_range>();   // anything else keeps travelling down the error path
//     std::cerr << f.type_name() << ": " << f.what() << '\n';
//     return 0;                      // recovered: the next callback gets 0
//   });
//
// Thread-safety: a failure is a value; copies share the exception object, which is only read.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace anydefer {

class failure {
 public:
  // Wraps `error`. Throws std::invalid_argument if `error` is null: a failure always has a cause.
  failure(std::exception_ptr error);  // NOLINT(google-explicit-constructor): an exception_ptr *is* a failure.

  // The failure of the exception currently being handled (call inside a catch block). Throws
  // std::invalid_argument outside one.
  static failure current();

  // A failure holding a copy of `e`.
  template <class E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr> && !std::is_same_v<std::decay_t<E>, failure>)
  static failure of(E&& e) { return failure(std::make_exception_ptr(std::forward<E>(e))); }

  const std::exception_ptr& exception() const noexcept { return error_; }

  // Throws the wrapped exception.
  [[noreturn]] void rethrow() const { std::rethrow_exception(error_); }

  // True if the exception is an `E` (or derives from one) for one of `Es` (Twisted's check()).
  template <class... Es>
  bool check() const noexcept {
    static_assert(sizeof...(Es) > 0, "check<E...>() needs at least one exception type");
    try {
      std::rethrow_exception(error_);
    } catch (...) {
      return (matches_current<Es>() || ...);
    }
  }

  // The exception as an `E` (or a class derived from one), or nullptr if it is not one; no try/catch needed at
  // the call site: `if (auto* e = f.get_if<anydefer::first_error>()) use(e->index());`. The pointer is valid
  // while this failure, or a copy of it, lives.
  template <class E>
  const E* get_if() const noexcept {
    try {
      std::rethrow_exception(error_);
    } catch (const E& e) {
      return &e;  // the object the exception_ptr holds: rethrow_exception does not copy it (Itanium C++ ABI)
    } catch (...) {
      return nullptr;
    }
  }

  // Returns normally if `check<Es...>()`, else rethrows the wrapped exception (Twisted's trap()): inside an
  // errback, a failure that is not trapped keeps travelling down the error path.
  template <class... Es>
  void trap() const {
    if (!check<Es...>()) rethrow();
  }

  // The exception's what() for std::exception, else a fixed text naming its type.
  std::string what() const;

  // The demangled dynamic type name of the exception, e.g. "std::out_of_range".
  std::string type_name() const;

  friend bool operator==(const failure& a, const failure& b) noexcept { return a.error_ == b.error_; }

 private:
  template <class E>
  static bool matches_current() noexcept {
    try {
      throw;
    } catch (const E&) {
      return true;
    } catch (...) {
      return false;
    }
  }

  std::exception_ptr error_;
};

// The outcome of a deferred: a value of T (nothing for void) or a failure. What `add_both` callbacks receive.
template <class T>
class result {
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  template <class U = T>
    requires(std::is_void_v<U>)
  result() : v_(std::in_place_index<0>) {}
  template <class U = T>
    requires(!std::is_void_v<U>)
  result(std::type_identity_t<U> value)
      : v_(std::in_place_index<0>, std::move(value)) {}                    // NOLINT(google-explicit-constructor)
  result(failure error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const noexcept { return v_.index() == 0; }
  bool has_failure() const noexcept { return v_.index() == 1; }
  explicit operator bool() const noexcept { return has_value(); }

  // The value; rethrows the failure's exception if there is none.
  decltype(auto) value() & {
    if (has_failure()) std::get<1>(v_).rethrow();
    if constexpr (!std::is_void_v<T>) return std::get<0>(v_);
  }
  decltype(auto) value() const& {
    if (has_failure()) std::get<1>(v_).rethrow();
    if constexpr (!std::is_void_v<T>) return std::get<0>(v_);
  }
  decltype(auto) value() && {
    if (has_failure()) std::get<1>(v_).rethrow();
    if constexpr (!std::is_void_v<T>) return std::move(std::get<0>(v_));
  }

  // The failure. Throws std::logic_error if the result holds a value.
  const failure& error() const {
    if (!has_failure()) throw std::logic_error("anydefer: result<T>::error() on a result that holds a value");
    return std::get<1>(v_);
  }

 private:
  std::variant<stored, failure> v_;
};

}  // namespace anydefer
