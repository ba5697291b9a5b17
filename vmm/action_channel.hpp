// ActionChannel: the API thread's way into the VMM thread. post() queues a
// VmmAction, wakes the VMM thread through an eventfd and blocks until the
// VMM thread answers; the VMM thread polls event_fd(), take()s what is
// queued, executes it and answers each Pending. close() answers whatever is
// queued and every later post() with an error, so a client never waits on
// a VMM thread that has stopped serving.
#pragma once

#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/core/event_fd.hpp"
#include "vmm/vmm_action.hpp"

namespace hvz::vmm {

class ActionChannel {
 public:
  static Expected<std::unique_ptr<ActionChannel>> create();

  // Any thread but the VMM thread: queues `action` and returns the VMM
  // thread's answer; after close(), the close reason at once.
  VmmResult post(VmmAction action);

  // The VMM thread: readable while actions are queued.
  int event_fd() const { return event_.fd(); }
  // An action taken off the queue, with the promise of its answer (a
  // Pending dropped unanswered answers with an error).
  class Pending {
   public:
    Pending(VmmAction action, std::promise<VmmResult> answer)
        : action_(std::move(action)), answer_(std::move(answer)) {}
    // A moved-from Pending owes no answer.
    Pending(Pending&& other) noexcept
        : action_(std::move(other.action_)), answer_(std::move(other.answer_)) {
      other.answer_.reset();
    }
    Pending& operator=(Pending&&) = delete;
    ~Pending();
    VmmAction& action() { return action_; }
    void answer(VmmResult result);

   private:
    VmmAction action_;
    std::optional<std::promise<VmmResult>> answer_;
  };
  // Everything queued, oldest first (empty after close()).
  std::vector<Pending> take();
  // From now on every queued and later action is answered with `reason`
  // (Errc::kInvalidArgument, so the API says 400). Idempotent: the first
  // reason stays.
  void close(const std::string& reason);
  bool closed() const;

 private:
  explicit ActionChannel(EventFd event) : event_(std::move(event)) {}

  EventFd event_;
  mutable std::mutex mutex_;
  std::deque<Pending> queue_;          // under mutex_
  std::optional<std::string> closed_;  // under mutex_: the close reason
};

}  // namespace hvz::vmm
