#include "resp.hpp"

#include <charconv>
#include <cstring>
#include <utility>

namespace resp {

// --- input_buffer ------------------------------------------------------------------------------------------------

char* input_buffer::prepare(std::size_t n) {
  if (data_.size() - end_ < n) {
    if (begin_ > 0) {  // slide the unparsed bytes to the front
      std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (data_.size() - end_ < n) data_.resize(end_ + n);
  }
  return data_.data() + end_;
}

void input_buffer::consume(std::size_t n) noexcept {
  begin_ += n;
  if (begin_ == end_) begin_ = end_ = 0;
}

void input_buffer::reserve_request(std::size_t total) {
  if (total > end_ - begin_) prepare(total - (end_ - begin_));
}

// --- parser ------------------------------------------------------------------------------------------------------

namespace {

// The line at `from` without its CRLF, or nullopt if no LF came yet.
std::optional<std::string_view> line_at(std::string_view in, std::size_t from) noexcept {
  const std::size_t lf = in.find('\n', from);
  if (lf == std::string_view::npos) return std::nullopt;
  std::size_t end = lf;
  if (end > from && in[end - 1] == '\r') --end;
  return in.substr(from, end - from);
}

}  // namespace

std::optional<long long> to_integer(std::string_view text) noexcept {
  if (text.empty() || text.size() > 20) return std::nullopt;
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

parser::status parser::fail(std::string why) {
  error_ = "Protocol error: " + std::move(why);
  in_array_ = false;
  return status::error;
}

parser::status parser::parse_inline(std::string_view in) {
  const auto line = line_at(in, 0);
  if (!line) {
    if (in.size() > limits_.max_inline) return fail("too big inline request");
    return status::incomplete;
  }
  if (line->size() > limits_.max_inline) return fail("too big inline request");
  args_.clear();
  std::size_t i = 0;
  while (i < line->size()) {
    while (i < line->size() && ((*line)[i] == ' ' || (*line)[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line->size() && (*line)[i] != ' ' && (*line)[i] != '\t') ++i;
    if (i > start) {
      if (args_.size() == limits_.max_array) return fail("invalid multibulk length");
      args_.push_back(line->substr(start, i - start));
    }
  }
  consumed_ = in.find('\n') + 1;
  return status::command;
}

parser::status parser::next(std::string_view in) {
  {
    needed_ = 0;
    if (!in_array_) {
      if (in.empty()) return status::incomplete;
      if (in.front() != '*') return parse_inline(in);
      const auto header = line_at(in, 0);
      if (!header) {
        if (in.size() > limits_.max_inline) return fail("too big mbulk count string");
        return status::incomplete;
      }
      const auto count = to_integer(header->substr(1));
      if (!count || *count > static_cast<long long>(limits_.max_array)) return fail("invalid multibulk length");
      position_ = in.find('\n') + 1;
      if (*count <= 0) {  // "*0" or "*-1": an empty command
        args_.clear();
        consumed_ = position_;
        return status::command;
      }
      elements_ = static_cast<std::size_t>(*count);
      spans_.clear();
      in_array_ = true;
    }
    while (spans_.size() < elements_) {
      if (position_ >= in.size()) return status::incomplete;
      if (in[position_] != '$') {
        return fail(std::string("expected '$', got '") + in[position_] + "'");
      }
      const auto header = line_at(in, position_);
      if (!header) {
        if (in.size() - position_ > limits_.max_inline) return fail("too big bulk count string");
        return status::incomplete;
      }
      const auto length = to_integer(header->substr(1));
      if (!length || *length < 0 || static_cast<unsigned long long>(*length) > limits_.max_bulk) {
        return fail("invalid bulk length");
      }
      const std::size_t data = in.find('\n', position_) + 1;
      const auto size = static_cast<std::size_t>(*length);
      if (in.size() < data + size + 2) {
        needed_ = data + size + 2;
        return status::incomplete;
      }
      if (in[data + size] != '\r' || in[data + size + 1] != '\n') return fail("expected CRLF after bulk string");
      spans_.emplace_back(data, size);
      position_ = data + size + 2;
    }
    // Views only now: the buffer may have moved since the first elements were parsed.
    args_.clear();
    for (const auto& [offset, size] : spans_) args_.push_back(in.substr(offset, size));
    in_array_ = false;
    consumed_ = position_;
    return status::command;
  }
}

// --- replies -----------------------------------------------------------------------------------------------------

namespace {

void append_number(std::string& out, long long value) {
  char digits[24];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

}  // namespace

void simple(std::string& out, std::string_view text) {
  out.push_back('+');
  out.append(text);
  out.append("\r\n");
}

void error(std::string& out, std::string_view text) {
  out.push_back('-');
  out.append(text);
  out.append("\r\n");
}

void integer(std::string& out, long long value) {
  out.push_back(':');
  append_number(out, value);
  out.append("\r\n");
}

void bulk(std::string& out, std::string_view value) {
  out.push_back('$');
  append_number(out, static_cast<long long>(value.size()));
  out.append("\r\n");
  out.append(value);
  out.append("\r\n");
}

void null_bulk(std::string& out) { out.append("$-1\r\n"); }

void array_header(std::string& out, std::size_t n) {
  out.push_back('*');
  append_number(out, static_cast<long long>(n));
  out.append("\r\n");
}

}  // namespace resp
