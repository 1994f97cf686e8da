// WatchQueue: the FIFO of a watch stream's undelivered items, which holds no memory while empty.
//
// A std::deque allocates its map and a first 512-byte block when constructed, used or not, and
// frees them only when destroyed. A watch stream is idle most of its life (its snapshot leaves
// at once, then nothing is queued), and a server holds thousands of them; two empty deques per
// stream were about 1 KB of its memory. WatchQueue creates its deque for the first item and
// destroys it when the last one leaves, so an empty queue is a null pointer: 8 bytes of its
// stream instead of a deque's 80.
//
// Thread safety: none (the stream guards it with its lock).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <utility>

namespace exportd {

template <typename T>
class WatchQueue {
 public:
  bool empty() const { return items_ == nullptr; }
  size_t size() const { return items_ ? items_->size() : 0; }

  void push_back(T item) {
    if (!items_) items_ = std::make_unique<std::deque<T>>();
    items_->push_back(std::move(item));
  }

  // REQUIRES: !empty().
  T& front() { return items_->front(); }
  T& back() { return items_->back(); }

  // Removes and returns the first item; the last one frees the queue's memory.
  // REQUIRES: !empty().
  T pop_front() {
    T item = std::move(items_->front());
    items_->pop_front();
    if (items_->empty()) items_.reset();
    return item;
  }

  void clear() { items_.reset(); }

 private:
  // Absent while empty: never an empty deque.
  std::unique_ptr<std::deque<T>> items_;
};

}  // namespace exportd
