// ActionChannel: an action posted from one thread is answered by the
// thread that takes it; close() answers what is queued and refuses what
// comes later, and an action dropped unanswered still gets an answer.
#include "vmm/action_channel.hpp"

#include <poll.h>

#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace hvz::vmm {
namespace {

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

TEST(ActionChannel, PostedActionIsAnsweredByTheTaker) {
  auto channel = ActionChannel::create();
  ASSERT_TRUE(channel);
  auto& c = **channel;
  auto posted = std::async(std::launch::async, [&] { return c.post(Pause{}); });
  ASSERT_TRUE(readable(c.event_fd(), 5000));
  auto taken = c.take();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Pause>(taken[0].action()));
  taken[0].answer(make_error(Errc::kInvalidArgument, "no"));
  const VmmResult r = posted.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "no");
  EXPECT_FALSE(readable(c.event_fd(), 0));
}

TEST(ActionChannel, CloseAnswersQueuedAndRefusesLaterActions) {
  auto channel = ActionChannel::create();
  ASSERT_TRUE(channel);
  auto& c = **channel;
  auto queued = std::async(std::launch::async, [&] { return c.post(Resume{}); });
  ASSERT_TRUE(readable(c.event_fd(), 5000));
  c.close("the microVM has stopped");
  EXPECT_TRUE(c.closed());
  const VmmResult r = queued.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "the microVM has stopped");
  const VmmResult late = c.post(SendCtrlAltDel{});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().message(), "the microVM has stopped");
  EXPECT_TRUE(c.take().empty());
  c.close("another reason");  // the first reason stays
  EXPECT_EQ(c.post(Pause{}).error().message(), "the microVM has stopped");
}

TEST(ActionChannel, ActionDroppedUnansweredGetsAnError) {
  auto channel = ActionChannel::create();
  ASSERT_TRUE(channel);
  auto& c = **channel;
  auto posted = std::async(std::launch::async, [&] { return c.post(Pause{}); });
  ASSERT_TRUE(readable(c.event_fd(), 5000));
  { auto taken = c.take(); }
  EXPECT_FALSE(posted.get());
}

TEST(ActionChannel, ActionsAreTakenInOrder) {
  auto channel = ActionChannel::create();
  ASSERT_TRUE(channel);
  auto& c = **channel;
  std::vector<std::future<VmmResult>> posted;
  posted.push_back(std::async(std::launch::async, [&] { return c.post(Pause{}); }));
  ASSERT_TRUE(readable(c.event_fd(), 5000));
  // The second is posted once the first is queued.
  posted.push_back(std::async(std::launch::async, [&] { return c.post(Resume{}); }));
  std::vector<ActionChannel::Pending> taken;
  while (taken.size() < 2) {
    ASSERT_TRUE(readable(c.event_fd(), 5000));
    for (auto& p : c.take()) taken.push_back(std::move(p));
  }
  EXPECT_STREQ(action_name(taken[0].action()), "Pause");
  EXPECT_STREQ(action_name(taken[1].action()), "Resume");
  for (auto& p : taken) p.answer({});
  for (auto& f : posted) EXPECT_TRUE(f.get());
}

}  // namespace
}  // namespace hvz::vmm
