// The persistent entity actor: one per live instance. Recovers from snapshot + events,
// then for each command in arrival order: decide -> journal (await) -> apply -> reply.
#pragma once

#include "actors/entity_behavior.hpp"
#include "actors/entity_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/actor_storage.hpp>
#include <caf/response_promise.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace longhaul::actors {

/// A first-in first-out queue that holds no memory while empty (std::deque allocates a
/// block as soon as it is constructed): most live instances have nothing queued. Each item
/// has a node of its own (a queued command takes some 300 bytes, which glibc's malloc
/// serves from its per-thread caches); a vector grew into blocks of 1 KiB and more, which
/// go through malloc's slow path (malloc_consolidate) and were 1.5% of the retail bench.
template <class T>
class drainable_fifo {
  struct node {
    T item;
    node* next = nullptr;
  };

public:
  class iterator {
  public:
    explicit iterator(node* n) : n_(n) {}
    T& operator*() const { return n_->item; }
    T* operator->() const { return &n_->item; }
    iterator& operator++() {
      n_ = n_->next;
      return *this;
    }
    bool operator==(const iterator& other) const { return n_ == other.n_; }

  private:
    node* n_;
  };

  drainable_fifo() = default;
  drainable_fifo(const drainable_fifo&) = delete;
  drainable_fifo& operator=(const drainable_fifo&) = delete;
  ~drainable_fifo() { clear(); }

  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  void push_back(T item) {
    auto* n = new node{std::move(item)};
    if (tail_ != nullptr)
      tail_->next = n;
    else
      head_ = n;
    tail_ = n;
    ++size_;
  }
  void push_front(T item) {
    auto* n = new node{std::move(item), head_};
    head_ = n;
    if (tail_ == nullptr)
      tail_ = n;
    ++size_;
  }
  /// Precondition: !empty().
  T pop_front() {
    std::unique_ptr<node> n{head_};
    head_ = n->next;
    if (head_ == nullptr)
      tail_ = nullptr;
    --size_;
    return std::move(n->item);
  }
  /// Frees every node, one after another (no recursion however long the queue).
  void clear() noexcept {
    while (head_ != nullptr)
      delete std::exchange(head_, head_->next);
    tail_ = nullptr;
    size_ = 0;
  }
  iterator begin() noexcept { return iterator{head_}; }
  iterator end() noexcept { return iterator{nullptr}; }

private:
  node* head_ = nullptr;
  node* tail_ = nullptr;
  std::size_t size_ = 0;
};

/// State of one persistent entity actor. Only its own actor touches it.
struct entity_actor_state {
  static inline const char* name = "longhaul.entity";

  enum class mode { recovering, ready, writing, backoff, failed };

  struct pending_command {
    command_envelope cmd;
    caf::response_promise promise;
    /// cmd.delivery when it arrived (cmd may be moved on before the answer): non-zero
    /// answers with a delivery_answer (reply()).
    std::uint64_t delivery = 0;
  };

  std::shared_ptr<const entity_context> ctx;
  std::shared_ptr<const entity_behavior> behavior;
  caf::actor_addr supervisor;  ///< weak: no reference cycle with the supervisor
  caf::actor outbox;           ///< nudged after writes that queued outbox rows
  caf::actor scheduler;        ///< told about timer changes after each stored write
  std::string pid;

  mode current = mode::recovering;
  std::unique_ptr<entity_state> state;
  /// The instance's stored timers (name -> due): loaded at recovery, kept current after
  /// each write; a firing whose due time is not here is stale (scheduler S3).
  std::map<std::string, persistence::time_ms> timers;
  persistence::sequence_nr highest = 0;
  std::uint64_t events_since_snapshot = 0;
  drainable_fifo<pending_command> queue;  ///< commands not yet decided, in arrival order
  /// The one write in flight and what happens once it is stored. Held on the heap only
  /// while there is one, so an idle instance does not carry its ~600 bytes.
  struct write_in_flight {
    pending_command command;
    decision_record decision;  ///< its events went into the write; apply, reply, effects
    caf::error rejection;      ///< reported instead of a reply once stored (timers)
    /// The incident text the write opens ("" = it resolves the incident).
    std::optional<std::string> incident;
    std::optional<timer_change> timers;  ///< reported to the scheduler once stored
  };
  std::unique_ptr<write_in_flight> in_flight;
  /// The next recovery reports every stored timer to the scheduler (after a write with
  /// an unknown outcome, whose timer changes may have been stored unreported).
  bool resync_timers = false;
  std::uint64_t write_token = 0;
  std::string incident;     ///< open incident text; empty when none
  std::string failure;      ///< why recovery failed; empty when it did not
  std::uint64_t received = 0;  ///< commands received (compared by the supervisor)
  caf::actor_clock::time_point last_active;  ///< last command or write outcome (passivation)
  /// The last stored decision finished the instance (decision_record::finished): it asks
  /// to be passivated as soon as it is idle, instead of after passivate_after.
  bool finished = false;
  bool permit_held = false;
  /// Activated without reading the journal, as the supervisor does for a command: the
  /// state is presumed initial until the first write, stored as a new stream, proves it,
  /// or a recovery replaces it (see start_presumed_new).
  bool presumed_new = false;
  /// A write of this activation was stored: the id has a stream (told at passivation).
  bool stored_a_write = false;
  std::uint32_t restarts = 0;  ///< consecutive restarts, for exponential backoff
  std::unordered_map<std::string, std::uint32_t> failures;  ///< per command key
  std::vector<caf::response_promise> drain_waiters;
  std::vector<caf::response_promise> status_waiters;  ///< answered once recovered
};

/// How an activation begins.
enum class activation_start {
  /// Recover from the journal, after asking the supervisor for a recovery permit.
  recover,
  /// Recover from the journal with a permit the supervisor counted when it spawned the
  /// activation (saving the request and its answer); returned with permit_done once
  /// recovered, as is a permit asked for.
  recover_with_permit,
  /// Presume the id new: no read, the initial state, and the first command decided at
  /// once. Its write is stored only as a new stream (atomic_write::new_stream); if the
  /// id has a stream, or the decision stores no events, the activation recovers and
  /// decides the command again, so nothing decided against a wrong state is stored or
  /// answered.
  presume_new,
};

/// The memory of instance actors that stopped, kept for the next activations. An
/// instance actor is some 1,500 bytes (CAF's event_based_actor alone is 1,016), above the
/// sizes glibc's malloc serves from its per-thread caches: each activation's allocation
/// first merged the fast bins (malloc_consolidate) and often grew the heap, and each
/// passivation's free split it again. With several activations per business transaction
/// that was 5-6% of the runtime's CPU time. Blocks of one size are kept on a free list
/// (taken by the supervisor's thread, given back by whichever thread drops the actor's
/// last reference), at most `capacity` of them (none in an AddressSanitizer build);
/// others go to and come from the heap.
class instance_memory {
public:
  static constexpr std::size_t capacity = 1024;
  [[nodiscard]] static void* take(std::size_t bytes);
  static void give_back(void* block, std::size_t bytes) noexcept;
  /// Blocks taken and not given back: instance actors whose memory is still held.
  [[nodiscard]] static std::size_t in_use() noexcept;
};

/// Spawn function of the persistent entity actor. `supervisor` receives passivation
/// requests and hands out recovery permits; `outbox` and `scheduler` may be invalid.
caf::behavior persistent_entity_actor(caf::stateful_actor<entity_actor_state>* self,
                                      std::shared_ptr<const entity_context> ctx,
                                      std::shared_ptr<const entity_behavior> behavior,
                                      std::string pid, caf::actor_addr supervisor,
                                      caf::actor outbox, caf::actor scheduler,
                                      activation_start start);

/// Stored event names the runtime itself writes into an instance's stream.
inline constexpr const char* incident_opened_event = "longhaul.incident_opened";
inline constexpr const char* incident_resolved_event = "longhaul.incident_resolved";
/// Tag carried by incident events, so `journal::read_all(.., tag)` lists them.
inline constexpr const char* incident_tag = "longhaul.incident";
/// Command name of a resume request (internal).
inline constexpr const char* resume_command = "longhaul.resume";

}  // namespace longhaul::actors

namespace caf {

/// The storage CAF 0.17 allocates for an instance actor (caf/actor_storage.hpp): its
/// control block at offset 0 and the actor one cache line further on, a layout CAF relies
/// on (actor_control_block::get()) and the assertions below check. It differs from the
/// primary template only in where its memory comes from: longhaul::actors::instance_memory.
/// Declared with entity_actor_state, so every spawn of the actor sees it.
template <>
class actor_storage<stateful_actor<longhaul::actors::entity_actor_state>> {
public:
  using actor_type = stateful_actor<longhaul::actors::entity_actor_state>;

  template <class... Us>
  actor_storage(actor_id aid, node_id nid, actor_system* sys, Us&&... xs)
    : ctrl(aid, nid, sys, destroy_actor, free_storage) {
    new (&data) actor_type(std::forward<Us>(xs)...);
  }
  ~actor_storage() {}  // the actor is destroyed by destroy_actor, before its storage
  actor_storage(const actor_storage&) = delete;
  actor_storage& operator=(const actor_storage&) = delete;

  static void* operator new(std::size_t bytes) {
    return longhaul::actors::instance_memory::take(bytes);
  }
  static void operator delete(void* block, std::size_t bytes) noexcept {
    longhaul::actors::instance_memory::give_back(block, bytes);
  }

  actor_control_block ctrl;
  char pad[CAF_CACHE_LINE_SIZE - sizeof(actor_control_block)];
  union {
    actor_type data;
  };

private:
  static void destroy_actor(abstract_actor* ptr) {
    ptr->on_destroy();
    static_cast<actor_type*>(ptr)->~actor_type();
  }
  static void free_storage(actor_control_block* ptr) {
    delete reinterpret_cast<actor_storage*>(ptr);
  }
};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
#endif
static_assert(offsetof(actor_storage<stateful_actor<longhaul::actors::entity_actor_state>>, ctrl)
                == 0,
              "CAF expects the control block at the start of an actor's storage");
static_assert(offsetof(actor_storage<stateful_actor<longhaul::actors::entity_actor_state>>, data)
                == CAF_CACHE_LINE_SIZE,
              "CAF expects the actor one cache line after its control block");
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace caf
