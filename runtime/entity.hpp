// The entity definition API: how a team declares a bounded context's entity type
// (stable name, state, commands, events with stored names and versions, decide, apply)
// and what a decision may ask for. runtime.hpp registers such a type with the runtime.
#pragma once

#include "actors/actor_error.hpp"
#include "actors/entity_behavior.hpp"
#include "persistence/persistence_error.hpp"

#include <boost/describe.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <unordered_map>
#include <variant>
#include <vector>

namespace longhaul {

using persistence::time_ms;

/// A command: a struct with a stable `command_name` and a Boost.JSON conversion
/// (BOOST_DESCRIBE_STRUCT or tag_invoke).
template <class T>
concept command_type = requires {
  { T::command_name } -> std::convertible_to<std::string_view>;
};

/// An event: a struct with a stable stored `event_name` (never reused) and a
/// `schema_version` (>= 1), plus a Boost.JSON conversion.
template <class T>
concept event_type = requires {
  { T::event_name } -> std::convertible_to<std::string_view>;
  { T::schema_version } -> std::convertible_to<std::uint32_t>;
};

/// What an entity accepts as input: its commands and the domain events it subscribes to.
template <class T>
concept message_type = command_type<T> || event_type<T>;

/// The stable name of a command or event type.
template <message_type T>
constexpr std::string_view message_name() {
  if constexpr (command_type<T>)
    return T::command_name;
  else
    return T::event_name;
}

/// A domain error returned by decide(): nothing is stored, the sender gets the reason.
struct rejection {
  std::string reason;
};

/// Builds a rejection: `return longhaul::reject("insufficient credit");`
[[nodiscard]] inline rejection reject(std::string reason) { return {std::move(reason)}; }

/// The outcome of decide(): events to store plus effects that are stored in the same
/// atomic write (outbox messages, timers) or happen after it (reply, snapshot).
/// `Event` is the entity's event variant.
/// Decodes `v` into `T` as a tolerant reader: for a described struct, fields of `v` that
/// `T` does not declare are ignored (newer senders, injected fields such as late_by_ms);
/// missing or mistyped fields still fail (throws boost::system::system_error).
template <class T>
T from_json(const boost::json::value& v) {
  if constexpr (boost::describe::has_describe_members<T>::value) {
    if (v.is_object()) {
      const auto& obj = v.as_object();
      // The common case, an object with exactly the declared fields, decodes in place:
      // copying it into `known` would give an equal object (a copy of every field).
      using members = boost::describe::describe_members<T, boost::describe::mod_public>;
      if (obj.size() == boost::mp11::mp_size<members>::value) {
        bool all_declared = true;
        boost::mp11::mp_for_each<members>([&](auto member) {
          all_declared = all_declared && obj.contains(member.name);
        });
        if (all_declared)
          return boost::json::value_to<T>(v);
      }
      boost::json::object known;
      boost::mp11::mp_for_each<
        boost::describe::describe_members<T, boost::describe::mod_public>>([&](auto member) {
        if (auto it = obj.find(member.name); it != obj.end())
          known.emplace(member.name, it->value());
      });
      // Parentheses: braces would pick the initializer-list constructor (an array).
      return boost::json::value_to<T>(boost::json::value(std::move(known)));
    }
  }
  return boost::json::value_to<T>(v);
}

template <class Event>
class decision {
public:
  /// No events and no effects.
  decision() = default;

  /// One event: `return payment_received{...};`
  template <class E>
    requires std::constructible_from<Event, E> && (!std::same_as<std::decay_t<E>, decision>)
  decision(E ev) {
    events_.emplace_back(std::move(ev));
  }

  /// A domain error: `return reject("...");`
  decision(rejection r) : rejection_(std::move(r.reason)), rejected_(true) {}

  /// Adds another event (stored in order, in the same atomic write).
  decision& emit(Event ev) {
    events_.push_back(std::move(ev));
    return *this;
  }

  /// Replies `value` (JSON-convertible) to the sender once the write is stored.
  template <class T>
  decision& reply(const T& value) {
    record_.reply = boost::json::value_from(value);
    return *this;
  }

  /// Sends `cmd` to instance `id` of entity type `type` through the outbox: delivered at
  /// least once after this decision is stored, applied at most once by the receiver.
  template <command_type C>
  decision& send(std::string type, std::string id, const C& cmd) {
    record_.sends.push_back({std::move(type), std::move(id), std::string{C::command_name},
                             boost::json::value_from(cmd), {}});
    return *this;
  }

  /// Publishes a domain event to its subscribers through the outbox.
  template <event_type E>
  decision& publish(const E& ev) {
    record_.publishes.push_back({std::string{E::event_name}, boost::json::value_from(ev)});
    return *this;
  }

  /// Sets (or replaces) the durable timer `name`: at `due_ms` (Unix ms) the command
  /// `cmd` is delivered to this instance.
  template <command_type C>
  decision& set_timer(std::string name, time_ms due_ms, const C& cmd) {
    record_.timers_to_set.push_back({std::move(name), due_ms, -1, std::string{C::command_name},
                                     boost::json::value_from(cmd)});
    return *this;
  }

  /// Sets (or replaces) the durable timer `name` due `delay` after this decision is
  /// stored (runtime clock). Works for any span: minutes, 7 days, a year.
  template <command_type C>
  decision& set_timer_after(std::string name, std::chrono::milliseconds delay, const C& cmd) {
    actors::timer_request t{std::move(name), 0, std::max<std::int64_t>(0, delay.count()),
                            std::string{C::command_name}, boost::json::value_from(cmd)};
    record_.timers_to_set.push_back(std::move(t));
    return *this;
  }

  /// The instance is done: every timer it has is removed with this decision, and once
  /// the decision is stored the instance leaves memory as soon as it is idle, without
  /// waiting for passivate_after (a later command activates it again from the journal).
  decision& finish() {
    record_.finished = true;
    return *this;
  }

  /// Cancels the durable timer `name` (no-op if it is not set).
  decision& cancel_timer(std::string name) {
    record_.timers_to_cancel.push_back(std::move(name));
    return *this;
  }

  /// Saves a snapshot of the state after this decision is stored.
  decision& snapshot() {
    record_.snapshot_requested = true;
    return *this;
  }

  /// True if decide() rejected the command.
  [[nodiscard]] bool rejected() const noexcept { return rejected_; }
  /// The rejection reason (empty unless rejected()).
  [[nodiscard]] const std::string& rejection_reason() const noexcept { return rejection_; }
  /// The events, in order.
  [[nodiscard]] const std::vector<Event>& events() const noexcept { return events_; }
  /// Moves the events out (runtime use).
  [[nodiscard]] std::vector<Event> take_events() { return std::move(events_); }
  /// The encoded effects (runtime use).
  [[nodiscard]] actors::decision_record& effects() noexcept { return record_; }

private:
  std::vector<Event> events_;
  actors::decision_record record_;
  std::string rejection_;
  bool rejected_ = false;
};

template <class T>
struct is_variant : std::false_type {};
template <class... Ts>
struct is_variant<std::variant<Ts...>> : std::true_type {};

/// An entity type: see README "Defining an entity". `command` and `event` are
/// std::variant of command/event types; decide() is pure; apply() never fails.
template <class E>
concept entity_type = requires(const typename E::state& cs, typename E::state& s,
                               const typename E::command& c, const typename E::event& ev) {
  { E::type_name } -> std::convertible_to<std::string_view>;
  requires is_variant<typename E::command>::value;
  requires is_variant<typename E::event>::value;
  requires std::default_initializable<typename E::state>;
  { E::decide(cs, c) } -> std::same_as<decision<typename E::event>>;
  { E::apply(s, ev) } -> std::same_as<void>;
};

/// Rewrites an event payload stored at schema version `from` into version `from + 1`.
using upcaster = std::function<boost::json::value(boost::json::value)>;

/// Per-type registration settings.
struct entity_settings {
  std::uint64_t snapshot_every = 0;        ///< snapshot after N events (0 = never)
  bool delete_events_on_snapshot = false;  ///< delete events a snapshot covers
  std::uint32_t max_failures = 3;          ///< same command failing N times -> incident
  /// Upcasters by (event name, from version).
  std::map<std::pair<std::string, std::uint32_t>, upcaster> upcasters;

  /// Registers an upcaster for `event_name` from `from_version` to `from_version + 1`.
  entity_settings& upcast(std::string event_name, std::uint32_t from_version, upcaster fn) {
    upcasters[{std::move(event_name), from_version}] = std::move(fn);
    return *this;
  }
};

namespace detail {

template <class Variant>
struct variant_codec;

template <class... Ts>
struct variant_codec<std::variant<Ts...>> {
  using variant = std::variant<Ts...>;
  using decoder = variant (*)(const boost::json::value&);

  /// Name -> decoder for every alternative.
  static const std::unordered_map<std::string_view, decoder>& decoders() {
    static const std::unordered_map<std::string_view, decoder> table = [] {
      std::unordered_map<std::string_view, decoder> t;
      (t.emplace(message_name<Ts>(),
                 [](const boost::json::value& v) -> variant {
                   return variant{from_json<Ts>(v)};
                 }),
       ...);
      return t;
    }();
    return table;
  }
};

/// The adapter from a typed entity definition to actors::entity_behavior.
template <entity_type E>
class typed_behavior final : public actors::entity_behavior {
public:
  using state_type = typename E::state;
  using command = typename E::command;
  using event = typename E::event;

  struct typed_state final : actors::entity_state {
    state_type value{};
  };

  typed_behavior(entity_settings settings) : settings_(std::move(settings)) {
    options_.snapshot_every = settings_.snapshot_every;
    options_.delete_events_on_snapshot = settings_.delete_events_on_snapshot;
    options_.max_failures = std::max<std::uint32_t>(1, settings_.max_failures);
  }

  const std::string& type_name() const override { return name_; }
  const actors::entity_options& options() const override { return options_; }

  std::unique_ptr<actors::entity_state> initial_state() const override {
    return std::make_unique<typed_state>();
  }

  caf::expected<actors::decision_record>
  decide(const actors::entity_state& s, const actors::command_envelope& env) const override {
    const auto& table = variant_codec<command>::decoders();
    auto it = table.find(env.name);
    if (it == table.end())
      return actors::make_actor_error(actors::actor_errc::unknown_command,
                                      "entity type '" + name_ + "' has no command or event '"
                                        + env.name + "'");
    command cmd;
    try {
      if (!take_typed(env, cmd))
        cmd = it->second(env.payload);
    } catch (const std::exception& e) {
      return actors::make_actor_error(actors::actor_errc::undecodable_command,
                                      "'" + env.name + "' for '" + name_ + "/" + env.entity_id
                                        + "' does not decode: " + e.what());
    }
    // User code: exceptions propagate to the persistent actor on purpose.
    auto d = E::decide(static_cast<const typed_state&>(s).value, cmd);
    if (d.rejected())
      return actors::make_actor_error(actors::actor_errc::rejected, d.rejection_reason());
    auto record = std::move(d.effects());
    auto events = d.take_events();
    record.events.reserve(events.size());
    for (const auto& ev : events)
      record.events.push_back(encode(ev));
    record.apply = [events = std::move(events)](actors::entity_state& st) {
      auto& value = static_cast<typed_state&>(st).value;
      for (const auto& ev : events)
        E::apply(value, ev);
    };
    return record;
  }

  bool decides_typed(const void* tag) const override {
    return tag != nullptr && alternative_of(tag) < std::variant_size_v<command>;
  }

  caf::error apply_stored(actors::entity_state& s,
                          const persistence::event_record& rec) const override {
    auto where = [&] {
      return "'" + rec.persistence_id + "' event " + std::to_string(rec.seq) + " '" + rec.type
             + "' (schema version " + std::to_string(rec.schema_version) + ")";
    };
    const auto& table = variant_codec<event>::decoders();
    auto it = table.find(rec.type);
    if (it == table.end())
      return actors::make_actor_error(actors::actor_errc::instance_failed,
                                      where() + ": unknown event name for entity type '"
                                        + name_ + "'");
    auto current = current_version(rec.type);
    if (rec.schema_version > current)
      return actors::make_actor_error(actors::actor_errc::instance_failed,
                                      where() + ": written by a newer version (this build knows "
                                        + std::to_string(current) + ")");
    try {
      auto payload = boost::json::parse(rec.payload_json);
      for (auto v = rec.schema_version; v < current; ++v) {
        auto up = settings_.upcasters.find({rec.type, v});
        if (up == settings_.upcasters.end())
          return actors::make_actor_error(actors::actor_errc::instance_failed,
                                          where() + ": no upcaster from version "
                                            + std::to_string(v));
        payload = up->second(std::move(payload));
      }
      E::apply(static_cast<typed_state&>(s).value, it->second(payload));
    } catch (const std::exception& e) {
      return actors::make_actor_error(actors::actor_errc::instance_failed,
                                      where() + ": payload does not decode: " + e.what());
    }
    return {};
  }

  caf::expected<std::string> encode_state(const actors::entity_state& s) const override {
    try {
      return boost::json::serialize(
        boost::json::value_from(static_cast<const typed_state&>(s).value));
    } catch (const std::exception& e) {
      return actors::make_actor_error(actors::actor_errc::instance_failed,
                                      "state of '" + name_ + "' does not encode: " + e.what());
    }
  }

  caf::expected<std::unique_ptr<actors::entity_state>>
  decode_state(std::string_view json) const override {
    try {
      auto st = std::make_unique<typed_state>();
      st->value = boost::json::value_to<state_type>(boost::json::parse(json));
      return std::unique_ptr<actors::entity_state>{std::move(st)};
    } catch (const std::exception& e) {
      return actors::make_actor_error(actors::actor_errc::instance_failed,
                                      "snapshot of '" + name_ + "' does not decode: " + e.what());
    }
  }

  bool accepts(std::string_view name) const override {
    return variant_codec<command>::decoders().count(name) > 0;
  }

private:
  /// The index of the `command` alternative whose typed_tag is `tag`, or variant_size.
  static std::size_t alternative_of(const void* tag) {
    return [tag]<std::size_t... I>(std::index_sequence<I...>) {
      std::size_t found = sizeof...(I);
      ((tag == actors::typed_tag<std::variant_alternative_t<I, command>>() ? (found = I, 0) : 0),
       ...);
      return found;
    }(std::make_index_sequence<std::variant_size_v<command>>{});
  }

  /// Copies a typed command of one of our alternatives into `out`; false if `env` has none.
  static bool take_typed(const actors::command_envelope& env, command& out) {
    if (!env.typed)
      return false;
    auto found = alternative_of(env.typed_tag);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return ((found == I ? (out.template emplace<I>(
                               *static_cast<const std::variant_alternative_t<I, command>*>(
                                 env.typed.get())),
                             true)
                          : false)
              || ...);
    }(std::make_index_sequence<std::variant_size_v<command>>{});
  }

  static persistence::new_event encode(const event& ev) {
    return std::visit(
      [](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        // The JSON tree only lives until it is serialized: build it in a stack buffer
        // instead of one heap allocation per field and per growth of the object.
        unsigned char scratch[2048];
        boost::json::monotonic_resource tree{scratch, sizeof(scratch)};
        return persistence::new_event{std::string{T::event_name}, T::schema_version,
                                      boost::json::serialize(boost::json::value_from(e, &tree)),
                                      {std::string{E::type_name}}};
      },
      ev);
  }

  static std::uint32_t current_version(std::string_view name) {
    std::uint32_t out = 0;
    std::visit([](const auto&) {}, event{});  // every alternative is default-constructible
    [&]<class... Ts>(std::variant<Ts...>*) {
      ((message_name<Ts>() == name ? (out = Ts::schema_version, 0) : 0), ...);
    }(static_cast<event*>(nullptr));
    return out;
  }

  std::string name_{E::type_name};
  entity_settings settings_;
  actors::entity_options options_;
};

}  // namespace detail

}  // namespace longhaul
