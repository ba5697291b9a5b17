// ActionChannel (see action_channel.hpp) and action_name().
#include "vmm/action_channel.hpp"

#include <exception>

namespace hvz::vmm {

const char* action_name(const VmmAction& action) {
  struct Name {
    const char* operator()(const StartInstance&) const { return "StartInstance"; }
    const char* operator()(const Pause&) const { return "Pause"; }
    const char* operator()(const Resume&) const { return "Resume"; }
    const char* operator()(const SendCtrlAltDel&) const { return "SendCtrlAltDel"; }
    const char* operator()(const UpdateDrive&) const { return "UpdateDrive"; }
    const char* operator()(const UpdateNetworkInterface&) const { return "UpdateNetworkInterface"; }
  };
  return std::visit(Name{}, action);
}

Expected<std::unique_ptr<ActionChannel>> ActionChannel::create() {
  auto event = EventFd::create();
  if (!event) return tl::unexpected(event.error());
  return std::unique_ptr<ActionChannel>(new ActionChannel(std::move(*event)));
}

ActionChannel::Pending::~Pending() {
  if (answer_) {
    answer_->set_value(make_error(Errc::kInvalidArgument, "the VMM dropped the request"));
  }
}

void ActionChannel::Pending::answer(VmmResult result) {
  if (!answer_) return;
  answer_->set_value(std::move(result));
  answer_.reset();
}

VmmResult ActionChannel::post(VmmAction action) {
  std::promise<VmmResult> promise;
  std::future<VmmResult> answer = promise.get_future();
  {
    // Signalled under the lock, so take() (which consumes the event, then
    // locks) either sees this action or is woken again for it.
    std::lock_guard lock(mutex_);
    if (closed_) return make_error(Errc::kInvalidArgument, *closed_);
    if (auto r = event_.signal(); !r) return tl::unexpected(r.error());
    queue_.emplace_back(std::move(action), std::move(promise));
  }
  try {
    return answer.get();
  } catch (const std::exception& e) {
    return make_error(Errc::kInvalidArgument, std::string("the VMM did not answer: ") + e.what());
  }
}

std::vector<ActionChannel::Pending> ActionChannel::take() {
  (void)event_.consume();
  std::lock_guard lock(mutex_);
  std::vector<Pending> taken;
  taken.reserve(queue_.size());
  for (auto& p : queue_) taken.push_back(std::move(p));
  queue_.clear();
  return taken;
}

void ActionChannel::close(const std::string& reason) {
  std::deque<Pending> refused;
  {
    std::lock_guard lock(mutex_);
    if (!closed_) closed_ = reason;
    refused.swap(queue_);
  }
  for (auto& p : refused) p.answer(make_error(Errc::kInvalidArgument, reason));
}

bool ActionChannel::closed() const {
  std::lock_guard lock(mutex_);
  return closed_.has_value();
}

}  // namespace hvz::vmm
