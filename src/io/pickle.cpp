#include "io/pickle.h"

#include <bit>
#include <cstdio>
#include <stdexcept>
#include <unordered_map>

namespace qkv {

PickleRef make_pickle_value(PickleValue::Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

PickleValue::~PickleValue() {
  std::vector<PickleRef> pending = std::move(items);
  for (auto& [key, value] : entries)
    pending.push_back(std::move(key)), pending.push_back(std::move(value));
  while (!pending.empty()) {
    PickleRef v = std::move(pending.back());
    pending.pop_back();
    if (v.use_count() != 1) continue;  // still held elsewhere (or null): not freed here
    for (auto& item : v->items) pending.push_back(std::move(item));
    for (auto& [key, value] : v->entries)
      pending.push_back(std::move(key)), pending.push_back(std::move(value));
    v->items.clear(), v->entries.clear();
  }  // each `v` is freed here with no children left to recurse into
}

std::string PickleValue::describe() const {
  switch (kind) {
    case Kind::none:
      return "None";
    case Kind::boolean:
      return "a bool";
    case Kind::integer:
    case Kind::big_integer:
      return "an int";
    case Kind::real:
      return "a float";
    case Kind::string:
      return "a string";
    case Kind::bytes:
      return "bytes";
    case Kind::tuple:
      return "a tuple";
    case Kind::list:
      return "a list";
    case Kind::dict:
      return "a dict";
    case Kind::global:
      return "the global " + text;
    case Kind::object:
      return "a " + object_type;
  }
  return "a value";
}

namespace {

using Kind = PickleValue::Kind;

class Unpickler {
 public:
  Unpickler(std::string_view bytes, size_t pos, const PickleHooks& hooks, const std::string& origin)
      : b_(bytes), pos_(pos), hooks_(hooks), origin_(origin) {}

  PickleRef run(size_t* end);

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(origin_ + ": bad pickle at byte " + std::to_string(op_at_) + ": " +
                             what);
  }
  std::string_view take(uint64_t n) {
    if (n > b_.size() - pos_) fail("it ends early (truncated file?)");
    std::string_view s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t unsigned_le(int n) {
    std::string_view s = take(uint64_t(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | uint8_t(s[size_t(i)]);
    return v;
  }
  std::string line() {  // GLOBAL's "module\n" and "name\n"
    size_t nl = b_.find('\n', pos_);
    if (nl == std::string_view::npos) fail("a global's name has no end");
    std::string s(b_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }
  PickleRef pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    PickleRef v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PickleRef& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    return stack_.back();
  }
  std::vector<PickleRef> pop_to_mark() {
    if (marks_.empty()) fail("no mark to pop to");
    std::vector<PickleRef> items(stack_.begin() + std::ptrdiff_t(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  PickleRef& expect(PickleRef& v, Kind kind, const char* op) {
    if (v->kind != kind) fail(std::string(op) + " on " + v->describe());
    return v;
  }
  void push_scalar(Kind kind, int64_t integer) {
    PickleRef v = make_pickle_value(kind);
    v->integer = integer;
    stack_.push_back(v);
  }
  void push_text(Kind kind, std::string_view text) {
    PickleRef v = make_pickle_value(kind);
    v->text = std::string(text);
    stack_.push_back(v);
  }
  void push_long(uint64_t n) {
    std::string_view s = take(n);
    if (n <= 8) {
      uint64_t v = 0;
      for (size_t i = n; i-- > 0;) v = (v << 8) | uint8_t(s[i]);
      if (n > 0 && n < 8 && (uint8_t(s[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign
      push_scalar(Kind::integer, int64_t(v));
    } else {
      push_text(Kind::big_integer, s);
    }
  }
  void push_tuple(std::vector<PickleRef> items) {
    PickleRef t = make_pickle_value(Kind::tuple);
    t->items = std::move(items);
    stack_.push_back(t);
  }
  void set_items(PickleRef& dict, const std::vector<PickleRef>& kv) {
    if (kv.size() % 2) fail("an odd number of dict keys and values");
    for (size_t i = 0; i < kv.size(); i += 2) dict->entries.emplace_back(kv[i], kv[i + 1]);
  }
  void call(const PickleRef& global, const PickleRef& args) {
    if (global->kind != Kind::global) fail("a call of " + global->describe());
    if (args->kind != Kind::tuple) fail("the arguments of " + global->text + " are not a tuple");
    stack_.push_back(hooks_.call(global->text, args));
  }
  void step(uint8_t op);

  std::string_view b_;
  size_t pos_, op_at_ = 0;
  const PickleHooks& hooks_;
  const std::string& origin_;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleRef> memo_;
  bool stopped_ = false;
};

PickleRef Unpickler::run(size_t* end) {
  while (!stopped_) {
    op_at_ = pos_;
    step(uint8_t(take(1)[0]));
  }
  if (stack_.size() != 1 || !marks_.empty())
    fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
  *end = pos_;
  return stack_.back();
}

void Unpickler::step(uint8_t op) {
  switch (op) {
    case 0x80:
      take(1);
      break;  // PROTO
    case 0x95:
      take(8);
      break;  // FRAME: only a read-ahead hint
    case '.':
      stopped_ = true;
      break;
    case '(':
      marks_.push_back(stack_.size());
      break;
    case '0':
      pop();
      break;
    case '1':
      pop_to_mark();
      break;
    case '2':
      stack_.push_back(top());
      break;
    case 'N':
      stack_.push_back(make_pickle_value(Kind::none));
      break;
    case 0x88:
      push_scalar(Kind::boolean, 1);
      break;
    case 0x89:
      push_scalar(Kind::boolean, 0);
      break;
    case 'J':
      push_scalar(Kind::integer, int32_t(uint32_t(unsigned_le(4))));
      break;
    case 'K':
      push_scalar(Kind::integer, int64_t(unsigned_le(1)));
      break;
    case 'M':
      push_scalar(Kind::integer, int64_t(unsigned_le(2)));
      break;
    case 0x8a:
      push_long(unsigned_le(1));
      break;  // LONG1
    case 0x8b:
      push_long(unsigned_le(4));
      break;     // LONG4
    case 'G': {  // BINFLOAT: big-endian double
      PickleRef v = make_pickle_value(Kind::real);
      v->real = std::bit_cast<double>(__builtin_bswap64(unsigned_le(8)));
      stack_.push_back(v);
      break;
    }
    case 'X':
      push_text(Kind::string, take(unsigned_le(4)));
      break;
    case 0x8c:
      push_text(Kind::string, take(unsigned_le(1)));
      break;
    case 0x8d:
      push_text(Kind::string, take(unsigned_le(8)));
      break;
    case 'T':
      push_text(Kind::bytes, take(unsigned_le(4)));
      break;
    case 'U':
      push_text(Kind::bytes, take(unsigned_le(1)));
      break;
    case 'B':
      push_text(Kind::bytes, take(unsigned_le(4)));
      break;
    case 'C':
      push_text(Kind::bytes, take(unsigned_le(1)));
      break;
    case 0x8e:
      push_text(Kind::bytes, take(unsigned_le(8)));
      break;
    case ')':
      push_tuple({});
      break;
    case 't':
      push_tuple(pop_to_mark());
      break;
    case 0x85:
      push_tuple({pop()});
      break;
    case 0x86: {
      PickleRef b = pop(), a = pop();
      push_tuple({a, b});
      break;
    }
    case 0x87: {
      PickleRef c = pop(), b = pop(), a = pop();
      push_tuple({a, b, c});
      break;
    }
    case ']':
      stack_.push_back(make_pickle_value(Kind::list));
      break;
    case 'l': {
      PickleRef l = make_pickle_value(Kind::list);
      l->items = pop_to_mark();
      stack_.push_back(l);
      break;
    }
    case 'a': {
      PickleRef v = pop();
      expect(top(), Kind::list, "APPEND")->items.push_back(v);
      break;
    }
    case 'e': {
      std::vector<PickleRef> items = pop_to_mark();
      auto& list = expect(top(), Kind::list, "APPENDS")->items;
      list.insert(list.end(), items.begin(), items.end());
      break;
    }
    case '}':
      stack_.push_back(make_pickle_value(Kind::dict));
      break;
    case 'd': {
      PickleRef d = make_pickle_value(Kind::dict);
      set_items(d, pop_to_mark());
      stack_.push_back(d);
      break;
    }
    case 's': {
      PickleRef v = pop(), k = pop();
      set_items(expect(top(), Kind::dict, "SETITEM"), {k, v});
      break;
    }
    case 'u': {
      std::vector<PickleRef> kv = pop_to_mark();
      set_items(expect(top(), Kind::dict, "SETITEMS"), kv);
      break;
    }
    case 'c': {
      std::string module = line();
      push_text(Kind::global, module + "." + line());
      break;
    }
    case 0x93: {  // STACK_GLOBAL
      PickleRef name = pop(), module = pop();
      if (name->kind != Kind::string || module->kind != Kind::string)
        fail("STACK_GLOBAL of non-strings");
      push_text(Kind::global, module->text + "." + name->text);
      break;
    }
    case 'R':     // REDUCE: callable, args
    case 0x81: {  // NEWOBJ: class, args
      PickleRef args = pop(), callable = pop();
      call(callable, args);
      break;
    }
    case 'b':  // BUILD: an instance's attributes (a state_dict's _metadata): not needed
      pop();
      top();
      break;
    case 'Q':
      stack_.push_back(hooks_.persistent_load(pop()));
      break;
    case 'q':
      memo_[unsigned_le(1)] = top();
      break;
    case 'r':
      memo_[unsigned_le(4)] = top();
      break;
    case 0x94:
      memo_[memo_.size()] = top();
      break;  // MEMOIZE
    case 'h':
    case 'j': {
      uint64_t key = unsigned_le(op == 'h' ? 1 : 4);
      auto it = memo_.find(key);
      if (it == memo_.end()) fail("memo entry " + std::to_string(key) + " was never stored");
      stack_.push_back(it->second);
      break;
    }
    default: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", op);
      fail(std::string("opcode ") + hex + " is not one qkv reads");
    }
  }
}

}  // namespace

PickleRef unpickle(std::string_view bytes, size_t* pos, const PickleHooks& hooks,
                   const std::string& origin) {
  if (*pos > bytes.size()) throw std::runtime_error(origin + ": pickle starts past the end");
  return Unpickler(bytes, *pos, hooks, origin).run(pos);
}

}  // namespace qkv
