#include "anydefer/failure.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <typeinfo>

namespace anydefer {

failure::failure(std::exception_ptr error) : error_(std::move(error)) {
  if (!error_) throw std::invalid_argument("anydefer: a failure needs a non-null exception_ptr");
}

failure failure::current() {
  std::exception_ptr error = std::current_exception();
  if (!error) throw std::invalid_argument("anydefer: failure::current() called outside a catch block");
  return failure(std::move(error));
}

std::string failure::what() const {
  try {
    std::rethrow_exception(error_);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-std::exception of type " + type_name();
  }
}

std::string failure::type_name() const {
  try {
    std::rethrow_exception(error_);
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (type == nullptr) return "unknown";
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(type->name(), nullptr, nullptr, &status),
                                                     std::free);
    return status == 0 && demangled ? std::string(demangled.get()) : std::string(type->name());
  }
}

}  // namespace anydefer
