// anydefer/unhandled_error.hpp: where failures nobody consumed go.
//
//   anydefer::set_unhandled_error_handler([](const anydefer::failure& f, const std::source_location& where) {
//     log.error("deferred created at {}:{} failed unhandled: {}", where.file_name(), where.line(), f.what());
//   });
//
// A failure that reaches the end of a chain unconsumed is reported when its state is destroyed, with where that
// deferred was created (as is a canceller's exception after it fired its deferred). The handler is called on the
// thread that dropped the last reference, and must not throw (an exception from it is dropped, with a line on
// stderr).
//
// Thread-safety: set_unhandled_error_handler() may be called from any thread, at any time.
#pragma once

#include <functional>
#include <source_location>

#include "anydefer/failure.hpp"

namespace anydefer {

using unhandled_error_handler = std::function<void(const failure&, const std::source_location&)>;

// Installs `handler` process-wide and returns the previous one. An empty handler restores the default, which
// prints the failure's type, what() and the creation site to stderr.
unhandled_error_handler set_unhandled_error_handler(unhandled_error_handler handler);

}  // namespace anydefer
