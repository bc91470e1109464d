// Error handling for the agent: no exceptions on the packet and event paths. Every fallible
// call returns Result<T>; an Error carries the errno (0 when not a syscall failure) and the
// context a user needs to act on it.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sluice {

struct Error {
  int code = 0;         // errno, or 0
  std::string message;  // what failed, with context ("attach XDP to lb1: ...")

  std::string to_string() const {
    if (code == 0) return message;
    return message + ": " + std::strerror(code) + " (errno " + std::to_string(code) + ")";
  }
};

// An Error for a failed syscall or libbpf call (libbpf returns -errno).
inline Error sys_error(std::string context, int err = errno) {
  return Error{err < 0 ? -err : err, std::move(context)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : e_(std::move(e)) {}  // NOLINT
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *e_; }

 private:
  std::optional<Error> e_;
};

using Status = Result<void>;

// The success or error of a Result, without its value.
template <class T>
Status to_status(const Result<T>& r) {
  return r ? Status() : Status(r.error());
}

}  // namespace sluice
