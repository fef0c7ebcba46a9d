// A job's events go out in batches, in order, all of them, and Flush waits for the last.
#include "worker/event_batches.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace shears::worker {
namespace {

TEST(EventBatches, EventsQueuedDuringASlowCallGoInTheNextInOrder) {
  std::vector<std::vector<int64_t>> calls;  // the sequence numbers of each call, as sent
  {
    EventBatches batches([&](const std::vector<v1::JobEvent>& batch) {
      std::vector<int64_t> sent;
      for (const auto& e : batch) sent.push_back(e.sequence());
      calls.push_back(sent);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a server taking its time
    });
    for (int i = 1; i <= 1000; ++i) {
      v1::JobEvent event;
      event.set_sequence(i);
      batches.Add(event);
    }
    batches.Flush();
    std::vector<int64_t> all;
    for (const auto& call : calls) {
      EXPECT_LE(call.size(), EventBatches::kMaxBatch);
      all.insert(all.end(), call.begin(), call.end());
    }
    ASSERT_EQ(all.size(), 1000u) << "Flush returned before every event was sent";
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(all[i], i + 1);
    EXPECT_LT(calls.size(), 100u) << "batched, not one call an event";
    v1::JobEvent last;
    last.set_sequence(1001);
    batches.Add(last);
  }  // the destructor sends what is left
  EXPECT_EQ(calls.back().back(), 1001);
}

}  // namespace
}  // namespace shears::worker
