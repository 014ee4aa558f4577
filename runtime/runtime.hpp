// The embedding facade: what a service calls. Build from a runtime_config, register
// entity types and subscriptions, start(), then send()/ask() commands by (type, id);
// stop() drains. Flow: send/ask -> supervisor -> persistent actor -> journal -> reply.
#pragma once

#include "actors/actor_error.hpp"
#include "actors/actors_protocol.hpp"
#include "actors/outbox_dispatcher_actor.hpp"
#include "runtime/entity.hpp"
#include "runtime/flow_definition.hpp"
#include "runtime/flow_engine.hpp"
#include "runtime/runtime_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace longhaul {

/// An open incident: an instance whose command kept failing (see README "Incidents").
struct incident_info {
  std::string persistence_id;  ///< "<type>/<id>"
  std::string error;           ///< what the failing command reported
  persistence::time_ms opened_at_ms = 0;
};

/// The longhaul runtime embedded in a service process. Thread-safe after start():
/// send/ask/status/resume may be called from any thread, including CAF actors (ask
/// blocks the calling thread; actors should use request() with `envelope()` instead).
class runtime {
public:
  /// Builds a runtime; nothing is opened until start().
  explicit runtime(runtime_config cfg);

  /// Calls stop().
  ~runtime();

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Registers entity type `E` (before start()). A second type with the same name, or a
  /// name containing '/', makes start() fail.
  template <entity_type E>
  runtime& register_entity(entity_settings settings = {}) {
    if (settings.snapshot_every == 0)
      settings.snapshot_every = default_snapshot_every();
    add_behavior(std::make_shared<detail::typed_behavior<E>>(std::move(settings)));
    return *this;
  }

  /// Subscribes entity type `entity` to domain event `Ev`: each published `Ev` is
  /// delivered (exactly once) to the instance whose id `correlate` returns. The entity's
  /// command variant must contain `Ev`. Call before start().
  template <event_type Ev>
  runtime& subscribe(std::string entity, std::function<std::string(const Ev&)> correlate) {
    add_subscription(std::string{Ev::event_name},
                     actors::subscription{
                       std::move(entity),
                       [fn = std::move(correlate)](const boost::json::value& v)
                         -> caf::expected<std::string> {
                         try {
                           return fn(from_json<Ev>(v));
                         } catch (const std::exception& e) {
                           return actors::make_actor_error(actors::actor_errc::undecodable_command,
                                                           e.what());
                         }
                       }});
    return *this;
  }

  /// Registers a flow (before start()): its instances become entities of type
  /// `def.name`, subscribed to its trigger and wait events. Fails if `def` is invalid.
  [[nodiscard]] caf::error register_flow(flow_definition def);

  /// Starts flow instance `id` with initial `data` (JSON object); the flow key field is
  /// set to `id`. Fails if it already started.
  [[nodiscard]] caf::error start_flow(std::string_view flow, std::string_view id,
                                      boost::json::object data = {});

  /// Cancels a running flow instance: compensations of its completed steps run, then it
  /// ends as canceled with `reason`.
  [[nodiscard]] caf::error cancel_flow(std::string_view flow, std::string_view id,
                                       std::string reason);

  /// Where a flow instance stands: step, wait, deadline, history, compensations, data.
  [[nodiscard]] caf::expected<flow_status> flow_status_of(std::string_view flow,
                                                          std::string_view id);

  /// The registered flow definitions (for diagrams and tools).
  [[nodiscard]] const std::vector<flow_definition>& flows() const noexcept;

  /// Opens the journal and starts the actors. Fails on a bad configuration, duplicate
  /// type names, subscriptions to types that cannot handle the event, or journal errors.
  [[nodiscard]] caf::error start();

  /// Drains in-flight work (bounded by stop_timeout), flushes the journal and stops
  /// every actor. Idempotent; never hangs.
  void stop();

  /// True between a successful start() and stop().
  [[nodiscard]] bool running() const noexcept;

  /// The command as it travels: for actors that talk to supervisor() with request().
  template <command_type C>
  [[nodiscard]] static actors::command_envelope envelope(std::string_view type,
                                                         std::string_view id, const C& cmd) {
    actors::command_envelope env;
    env.entity_type = std::string{type};
    env.entity_id = std::string{id};
    env.name = std::string{C::command_name};
    // Travels as the object; encoded only if the receiver does not decide C itself.
    env.typed = std::make_shared<const C>(cmd);
    env.typed_tag = actors::typed_tag<C>();
    env.typed_encode = [](const void* p) -> boost::json::value {
      return boost::json::value_from(*static_cast<const C*>(p));
    };
    return env;
  }

  /// Fire and forget. Fails at once (nothing stored) for an unknown type, a bad id, or a
  /// runtime that is not running; later failures are logged.
  template <command_type C>
  [[nodiscard]] caf::error send(std::string_view type, std::string_view id, const C& cmd) {
    return send_envelope(envelope(type, id, cmd));
  }

  /// Sends `cmd` and waits for the outcome: the decision's reply converted to `Reply`
  /// (use `void` when none is expected), or the error (rejected, incident, timeout, ...).
  template <class Reply = void, command_type C>
  [[nodiscard]] caf::expected<Reply> ask(std::string_view type, std::string_view id,
                                         const C& cmd,
                                         std::optional<std::chrono::milliseconds> timeout = {}) {
    auto r = ask_envelope(envelope(type, id, cmd), timeout);
    if (!r)
      return r.error();
    if constexpr (std::is_void_v<Reply>) {
      return caf::expected<void>{};
    } else {
      if (!r->reply)
        return actors::make_actor_error(actors::actor_errc::undecodable_command,
                                        "the decision for " + std::string{C::command_name}
                                          + " replied nothing");
      try {
        return from_json<Reply>(*r->reply);
      } catch (const std::exception& e) {
        return actors::make_actor_error(actors::actor_errc::undecodable_command,
                                        std::string{"reply does not decode: "} + e.what());
      }
    }
  }

  /// Low-level ask with an envelope; returns the raw reply.
  [[nodiscard]] caf::expected<actors::command_reply>
  ask_envelope(actors::command_envelope env, std::optional<std::chrono::milliseconds> timeout = {});

  /// Low-level send with an envelope.
  [[nodiscard]] caf::error send_envelope(actors::command_envelope env);

  /// Where an instance stands: mode, highest sequence number, queue, incident, state.
  [[nodiscard]] caf::expected<actors::instance_status> status(std::string_view type,
                                                             std::string_view id);

  /// Closes the open incident of an instance so that it accepts commands again.
  [[nodiscard]] caf::error resume(std::string_view type, std::string_view id);

  /// All open incidents (read from the journal).
  [[nodiscard]] caf::expected<std::vector<incident_info>> incidents();

  /// Number of live (activated) instances.
  [[nodiscard]] caf::expected<std::uint64_t> live_instances();

  /// The journal (valid after start()): for tools, projections and tests.
  [[nodiscard]] persistence::journal& journal();

  /// The actor system (valid after start()).
  [[nodiscard]] caf::actor_system& system();

  /// The supervisor: request(supervisor(), timeout, envelope(...)) from inside actors.
  [[nodiscard]] caf::actor supervisor() const;

  /// The runtime clock's current time (Unix ms).
  [[nodiscard]] persistence::time_ms now() const;

  /// The scheduler actor (durable timers).
  [[nodiscard]] caf::actor scheduler() const;

  /// The configuration this runtime was built from.
  [[nodiscard]] const runtime_config& config() const noexcept;

  /// Deterministic mode only: runs every pending actor job on this thread.
  void run_pending();

  /// Virtual clock: moves time forward by `d`. In deterministic mode it steps from one
  /// due timer to the next, firing each in due order and running all the work it causes
  /// (so a chain of timers over 30 days runs in order, in milliseconds), together with
  /// CAF's test clock (passivation, backoff, polls).
  void advance_time(std::chrono::milliseconds d);

  struct impl;

private:
  void add_behavior(std::shared_ptr<actors::entity_behavior> b);
  void add_subscription(std::string event_name, actors::subscription sub);
  [[nodiscard]] std::uint64_t default_snapshot_every() const noexcept;

  std::unique_ptr<impl> impl_;
};

}  // namespace longhaul
