// Status and Result<T>: the error channel for everything that input, files or the
// environment can cause. Asserts are reserved for programmer invariants.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace sd35 {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // bad request, bad shape, bad parameter
  kNotFound,           // missing file, missing tensor
  kDataLoss,           // corrupt or truncated file
  kUnsupported,        // valid input we do not handle (dtype, layout, feature)
  kResourceExhausted,  // out of memory, size limits
  kCancelled,          // job interrupted
  kIo,                 // operating-system I/O failure
  kInternal,           // bug or backend failure (cuBLAS, oneDNN)
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: message" — for logs and CLI output.
  std::string to_string() const;

  // Prepends context ("loading clip_l.safetensors: ") to the message of an error.
  Status with_context(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status ok_status() { return Status(); }
Status invalid_argument(std::string message);
Status not_found(std::string message);
Status data_loss(std::string message);
Status unsupported(std::string message);
Status resource_exhausted(std::string message);
Status cancelled(std::string message);
Status io_error(std::string message);
Status internal_error(std::string message);

// A value or an error. Holding an ok Status is a programmer error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(state_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(state_);
  }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace sd35

#define SD35_CONCAT_INNER(a, b) a##b
#define SD35_CONCAT(a, b) SD35_CONCAT_INNER(a, b)

#define SD35_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::sd35::Status sd35_status_ = (expr);       \
    if (!sd35_status_.ok()) return sd35_status_; \
  } while (0)

#define SD35_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define SD35_ASSIGN_OR_RETURN(lhs, expr) \
  SD35_ASSIGN_OR_RETURN_IMPL(SD35_CONCAT(sd35_result_, __LINE__), lhs, expr)
