// The embedding facade (see runtime.hpp): builds the journal, the actor system and the
// actors (readers, supervisor, outbox dispatcher) and drives them from plain threads.
#include "runtime/runtime.hpp"

#include "actors/journal_reader_actor.hpp"
#include "actors/persistent_entity_actor.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/supervisor_actor.hpp"
#include "persistence/memory_journal.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/thread_hook.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <sched.h>

namespace longhaul {

namespace {

/// Runs each CAF thread as SCHED_BATCH (runtime_config::yield_to_writer). The kernel
/// lets a woken SCHED_BATCH thread wait for a free core or the next tick instead of
/// preempting the running thread, and on a busy machine that is most often the journal's
/// writer, which every command waits for. In the retail benchmark on 2 cores the writer
/// was preempted about 370 times a second, most often right as its acknowledgements woke
/// a worker; as SCHED_BATCH the workers gave 10% more orders/s. Threads under another
/// policy (real time) stay as they are.
class yield_to_writer_hook final : public caf::thread_hook {
public:
  void init(caf::actor_system&) override {}
  void thread_started() override {
#ifdef __linux__
    if (sched_getscheduler(0) != SCHED_OTHER)
      return;
    sched_param param{};
    param.sched_priority = 0;
    (void) sched_setscheduler(0, SCHED_BATCH, &param);  // 0: the calling thread only
#endif
  }
  void thread_terminates() override {}
};

caf::error not_running() {
  return actors::make_actor_error(actors::actor_errc::not_started,
                                  "the runtime is not running (call start())");
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& level) {
  static std::atomic<int> counter{0};
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto log = std::make_shared<spdlog::logger>("longhaul-" + std::to_string(++counter), sink);
  log->set_level(spdlog::level::from_str(level));
  log->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ longhaul %v");
  return log;
}

}  // namespace

struct runtime::impl {
  runtime_config cfg;
  std::unordered_map<std::string, std::shared_ptr<const actors::entity_behavior>> types;
  std::vector<std::string> registration_errors;
  actors::subscription_table subscriptions;
  std::vector<flow_definition> flows;

  std::shared_ptr<persistence::journal> journal;
  persistence::sqlite_journal* sqlite = nullptr;  // same object as journal, if SQLite
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<actors::entity_context> ctx;
  caf::actor supervisor;
  caf::actor readers;
  caf::actor dispatcher;
  caf::actor scheduler;
  std::atomic<bool> running{false};
  std::mutex lifecycle;

  caf::scheduler::test_coordinator& coordinator() {
    return dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
  }

  void run_pending() {
    if (cfg.deterministic && sys)
      coordinator().run();
  }

  caf::error check_address(const actors::command_envelope& env) const {
    if (types.find(env.entity_type) == types.end())
      return actors::make_actor_error(actors::actor_errc::unknown_entity_type,
                                      "no entity type '" + env.entity_type + "' is registered");
    if (env.entity_id.empty() || env.entity_id.size() > cfg.max_id_bytes)
      return actors::make_actor_error(
        actors::actor_errc::invalid_id,
        "id of " + std::to_string(env.entity_id.size()) + " bytes for entity type '"
          + env.entity_type + "' (must be 1.." + std::to_string(cfg.max_id_bytes) + ")");
    return {};
  }

  /// Sends `msg` to the supervisor from a scoped actor and waits for the answer of
  /// type T. In deterministic mode, runs the scheduler instead of blocking.
  template <class T, class... Ts>
  caf::expected<T> request(std::chrono::milliseconds timeout, Ts&&... xs) {
    return request_from<T>(supervisor, timeout, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> request_from(const caf::actor& dest, std::chrono::milliseconds timeout,
                                Ts&&... xs) {
    caf::scoped_actor self{*sys};
    caf::expected<T> result{caf::error{}};
    // No CAF request timeout: CAF 0.17 keeps each one in its clock until it expires,
    // answered or not (see actors/request_deadlines.hpp). The wait below is bounded by a
    // receive timeout instead, which ends with the receive; a late answer goes to this
    // scoped actor after it is gone and is dropped.
    auto handle = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
    if (cfg.deterministic) {
      run_pending();
      if (self->mailbox().empty())
        return actors::make_actor_error(
          actors::actor_errc::timeout,
          "no reply after running all pending work (deterministic mode: advance time?)");
    }
    auto on_error = [&](caf::error& err) { result = std::move(err); };
    auto on_timeout = caf::after(timeout) >> [&] {
      result = actors::make_actor_error(actors::actor_errc::timeout,
                                        "no reply within " + std::to_string(timeout.count())
                                          + " ms; the command may still be handled");
    };
    caf::blocking_actor::accept_one_cond rc;
    if constexpr (std::is_same_v<T, caf::unit_t>)
      self->varargs_receive(rc, handle.id(), [&]() { result = caf::unit; }, on_error,
                            on_timeout);
    else
      self->varargs_receive(rc, handle.id(), [&](T& x) { result = std::move(x); }, on_error,
                            on_timeout);
    return result;
  }
};

runtime::runtime(runtime_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  if (!impl_->cfg.clock) {
    if (impl_->cfg.deterministic)
      impl_->cfg.clock = std::make_shared<actors::virtual_clock>();
    else
      impl_->cfg.clock = std::make_shared<actors::real_clock>();
  }
}

runtime::~runtime() { stop(); }

void runtime::add_behavior(std::shared_ptr<actors::entity_behavior> b) {
  // A copy: a failed emplace below destroys `b`, and the name with it.
  const std::string name = b->type_name();
  if (name.empty() || name.find('/') != std::string::npos)
    impl_->registration_errors.push_back("entity type name '" + name
                                         + "' must be non-empty and contain no '/'");
  else if (!impl_->types.emplace(name, std::move(b)).second)
    impl_->registration_errors.push_back("entity type '" + name + "' is registered twice");
}

void runtime::add_subscription(std::string event_name, actors::subscription sub) {
  impl_->subscriptions[std::move(event_name)].push_back(std::move(sub));
}

caf::error runtime::register_flow(flow_definition def) {
  if (auto err = validate(def))
    return err;
  for (const auto& [event, field] : flow_subscriptions(def))
    add_subscription(event, actors::subscription{
                              def.name,
                              [event = event, field = field](const boost::json::value& v)
                                -> caf::expected<std::string> {
                                const boost::json::value* key = nullptr;
                                if (v.is_object())
                                  if (auto it = v.as_object().find(field); it != v.as_object().end())
                                    key = &it->value();
                                if (key == nullptr)
                                  return actors::make_actor_error(
                                    actors::actor_errc::undecodable_command,
                                    "event '" + event + "' has no field '" + field + "'");
                                return key->is_string() ? std::string{key->as_string()}
                                                        : boost::json::serialize(*key);
                              }});
  add_behavior(make_flow_behavior(def, impl_->cfg.clock));
  impl_->flows.push_back(std::move(def));
  return {};
}

caf::error runtime::start_flow(std::string_view flow, std::string_view id,
                               boost::json::object data) {
  actors::command_envelope env;
  env.entity_type = std::string{flow};
  env.entity_id = std::string{id};
  env.name = flow_start_command;
  env.payload = boost::json::object{{"data", std::move(data)}};
  auto r = ask_envelope(std::move(env));
  return r ? caf::error{} : r.error();
}

caf::error runtime::cancel_flow(std::string_view flow, std::string_view id, std::string reason) {
  actors::command_envelope env;
  env.entity_type = std::string{flow};
  env.entity_id = std::string{id};
  env.name = flow_cancel_command;
  env.payload = boost::json::object{{"reason", std::move(reason)}};
  auto r = ask_envelope(std::move(env));
  return r ? caf::error{} : r.error();
}

caf::expected<flow_status> runtime::flow_status_of(std::string_view flow, std::string_view id) {
  auto st = status(flow, id);
  if (!st)
    return st.error();
  if (!st->failure.empty())
    return actors::make_actor_error(actors::actor_errc::instance_failed, st->failure);
  return parse_flow_status(flow, id, st->state_json);
}

const std::vector<flow_definition>& runtime::flows() const noexcept { return impl_->flows; }

std::uint64_t runtime::default_snapshot_every() const noexcept {
  return impl_->cfg.snapshot_every;
}

caf::error runtime::start() {
  std::lock_guard guard{impl_->lifecycle};
  auto& d = *impl_;
  if (d.running)
    return {};
  auto invalid = [](std::string text) {
    return persistence::make_persistence_error(persistence::persistence_errc::invalid_argument,
                                               std::move(text));
  };
  if (!d.registration_errors.empty())
    return invalid(d.registration_errors.front());
  for (const auto& [event, subs] : d.subscriptions)
    for (const auto& sub : subs) {
      auto it = d.types.find(sub.entity_type);
      if (it == d.types.end())
        return invalid("subscription to '" + event + "' names unknown entity type '"
                       + sub.entity_type + "'");
      if (!it->second->accepts(event))
        return invalid("entity type '" + sub.entity_type + "' subscribes to '" + event
                       + "' but its command variant has no such event");
    }
  auto time = d.cfg.clock;
  std::function<persistence::time_ms()> clock = [time] { return time->now(); };
  // Storage.
  if (d.cfg.journal_override) {
    d.journal = d.cfg.journal_override;
    d.sqlite = nullptr;
  } else if (d.cfg.storage == storage_kind::memory) {
    persistence::memory_journal_config mc;
    mc.clock = clock;
    mc.limits.max_id_bytes = std::max<std::size_t>(d.cfg.max_id_bytes + 64, 512);
    d.journal = std::make_shared<persistence::memory_journal>(mc);
    d.sqlite = nullptr;
  } else {
    persistence::sqlite_journal_config sc;
    sc.path = d.cfg.database_path;
    sc.sync = d.cfg.sync;
    sc.cache_mb = d.cfg.cache_mb;
    sc.writer_cache_mb = d.cfg.writer_cache_mb;
    sc.sqlite_memory_status = d.cfg.sqlite_memory_status;
    sc.clock = clock;
    sc.limits.max_id_bytes = std::max<std::size_t>(d.cfg.max_id_bytes + 64, 512);
    auto j = persistence::sqlite_journal::open(sc);
    if (!j)
      return j.error();
    d.sqlite = j->get();
    d.journal = std::shared_ptr<persistence::journal>{std::move(*j)};
  }
  // Actor system.
  d.sys_cfg = std::make_unique<caf::actor_system_config>();
  if (d.cfg.deterministic) {
    d.sys_cfg->set("scheduler.policy", caf::atom("testing"));
  } else {
    // Default: one core is left to the journal's writer thread, which every command
    // waits for, but never fewer than two workers. On 2 cores one worker ran 14% more
    // commands a second (23 us of CPU per command against 30 us), yet could not keep up
    // with 10,000 timer firings a second on cold instances (p99 lateness 28 ms against
    // 1-4 ms with two): activations need the second worker more than the writer needs a
    // core of its own.
    auto cores = std::thread::hardware_concurrency();
    auto threads = d.cfg.worker_threads != 0 ? d.cfg.worker_threads
                                             : std::max(2u, cores > 1 ? cores - 1 : 1u);
    d.sys_cfg->set("scheduler.max-threads", threads);
    d.sys_cfg->set("scheduler.policy", d.cfg.scheduling == worker_scheduling::sharing
                                         ? caf::atom("sharing")
                                         : caf::atom("stealing"));
    if (d.cfg.yield_to_writer)
      d.sys_cfg->add_thread_hook<yield_to_writer_hook>();
  }
  d.sys = std::make_unique<caf::actor_system>(*d.sys_cfg);
  auto ctx = std::make_shared<actors::entity_context>();
  ctx->journal = d.journal;
  ctx->log = make_logger(d.cfg.log_level);
  ctx->time = time;
  auto& s = ctx->settings;
  s.passivate_after = d.cfg.passivate_after;
  s.max_concurrent_recoveries = std::max<std::size_t>(1, d.cfg.max_concurrent_recoveries);
  s.remembered_streams = d.cfg.remembered_streams;
  s.max_id_bytes = d.cfg.max_id_bytes;
  s.timer_window = std::max<std::size_t>(1, d.cfg.timer_window);
  s.inline_reads = d.cfg.deterministic;
  if (!s.inline_reads)
    ctx->readers = actors::spawn_journal_readers(*d.sys, d.journal, ctx->log, d.cfg.reader_threads);
  d.readers = ctx->readers;
  d.ctx = ctx;
  d.supervisor = d.sys->spawn(actors::supervisor_actor,
                              std::shared_ptr<const actors::entity_context>{ctx}, d.types);
  if (d.cfg.deterministic)
    d.dispatcher = d.sys->spawn(actors::outbox_dispatcher_actor,
                                std::shared_ptr<const actors::entity_context>{ctx},
                                d.supervisor.address(), d.subscriptions);
  else
    d.dispatcher = d.sys->spawn<caf::detached>(actors::outbox_dispatcher_actor,
                                               std::shared_ptr<const actors::entity_context>{ctx},
                                               d.supervisor.address(), d.subscriptions);
  auto sup_addr = d.supervisor.address();
  if (d.cfg.deterministic)
    d.scheduler = d.sys->spawn(actors::scheduler_actor,
                               std::shared_ptr<const actors::entity_context>{ctx}, sup_addr);
  else
    d.scheduler = d.sys->spawn<caf::detached>(actors::scheduler_actor,
                                              std::shared_ptr<const actors::entity_context>{ctx},
                                              sup_addr);
  caf::anon_send(d.supervisor, actors::set_outbox_atom::value, d.dispatcher, d.scheduler);
  d.run_pending();
  d.running = true;
  ctx->log->info("started: {} entity types, storage {}", d.types.size(),
                 d.cfg.storage == storage_kind::memory ? "memory" : d.cfg.database_path);
  return {};
}

void runtime::stop() {
  std::lock_guard guard{impl_->lifecycle};
  auto& d = *impl_;
  if (!d.sys)
    return;
  d.running = false;
  // 1. Drain: every instance finishes its queue and in-flight write (bounded).
  auto drained = d.request<caf::unit_t>(d.cfg.stop_timeout, actors::drain_atom::value);
  if (!drained)
    d.ctx->log->warn("stop: draining did not finish: {}", persistence::describe(drained.error()));
  // 2. Stop the actors; the supervisor stops the instances.
  caf::anon_send_exit(d.scheduler, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(d.dispatcher, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(d.supervisor, caf::exit_reason::user_shutdown);
  if (d.readers)
    caf::anon_send_exit(d.readers, caf::exit_reason::user_shutdown);
  d.run_pending();
  d.dispatcher = nullptr;
  d.scheduler = nullptr;
  d.supervisor = nullptr;
  d.readers = nullptr;
  d.ctx->readers = nullptr;
  if (!d.cfg.deterministic)
    d.sys->await_all_actors_done();
  // 3. Every queued journal write is acknowledged before the actor system goes away, so
  //    no writer-thread callback can reach a destroyed system.
  if (d.sqlite != nullptr)
    d.sqlite->close();
  else if (d.journal)
    d.journal->flush();
  d.run_pending();
  d.ctx->log->info("stopped");
  d.sys.reset();
  d.sys_cfg.reset();
  d.ctx.reset();
  d.sqlite = nullptr;
  d.journal.reset();
}

bool runtime::running() const noexcept { return impl_->running; }

caf::error runtime::send_envelope(actors::command_envelope env) {
  if (!impl_->running)
    return not_running();
  if (auto err = impl_->check_address(env))
    return err;
  caf::anon_send(impl_->supervisor, std::move(env));
  impl_->run_pending();
  return {};
}

caf::expected<actors::command_reply>
runtime::ask_envelope(actors::command_envelope env, std::optional<std::chrono::milliseconds> timeout) {
  if (!impl_->running)
    return not_running();
  if (auto err = impl_->check_address(env))
    return err;
  return impl_->request<actors::command_reply>(timeout.value_or(impl_->cfg.ask_timeout),
                                               std::move(env));
}

caf::expected<actors::instance_status> runtime::status(std::string_view type, std::string_view id) {
  if (!impl_->running)
    return not_running();
  actors::command_envelope probe;
  probe.entity_type = std::string{type};
  probe.entity_id = std::string{id};
  if (auto err = impl_->check_address(probe))
    return err;
  return impl_->request<actors::instance_status>(impl_->cfg.ask_timeout, actors::status_atom::value,
                                                 probe.entity_type, probe.entity_id);
}

caf::error runtime::resume(std::string_view type, std::string_view id) {
  if (!impl_->running)
    return not_running();
  auto r = impl_->request<actors::command_reply>(impl_->cfg.ask_timeout, actors::resume_atom::value,
                                                 std::string{type}, std::string{id});
  return r ? caf::error{} : r.error();
}

caf::expected<std::vector<incident_info>> runtime::incidents() {
  if (!impl_->journal)
    return not_running();
  std::map<std::string, incident_info> open;
  std::uint64_t after = 0;
  for (;;) {
    auto page = impl_->journal->read_all(after, 1000, std::string{actors::incident_tag});
    if (!page)
      return page.error();
    for (const auto& ev : *page) {
      if (ev.type == actors::incident_opened_event) {
        incident_info info{ev.persistence_id, "", ev.written_at_ms};
        boost::json::error_code ec;
        auto v = boost::json::parse(ev.payload_json, ec);
        if (!ec && v.is_object() && v.as_object().contains("error") && v.at("error").is_string())
          info.error = std::string{v.at("error").as_string()};
        open[ev.persistence_id] = std::move(info);
      } else if (ev.type == actors::incident_resolved_event) {
        open.erase(ev.persistence_id);
      }
      after = ev.position;
    }
    if (page->size() < 1000)
      break;
  }
  std::vector<incident_info> out;
  for (auto& [pid, info] : open)
    out.push_back(std::move(info));
  return out;
}

caf::expected<std::uint64_t> runtime::live_instances() {
  if (!impl_->running)
    return not_running();
  return impl_->request<std::uint64_t>(impl_->cfg.ask_timeout, actors::count_atom::value);
}

persistence::journal& runtime::journal() { return *impl_->journal; }

caf::actor_system& runtime::system() { return *impl_->sys; }

caf::actor runtime::supervisor() const { return impl_->supervisor; }

persistence::time_ms runtime::now() const { return impl_->cfg.clock->now(); }

caf::actor runtime::scheduler() const { return impl_->scheduler; }

const runtime_config& runtime::config() const noexcept { return impl_->cfg; }

void runtime::run_pending() { impl_->run_pending(); }

void runtime::advance_time(std::chrono::milliseconds d) {
  auto& st = *impl_;
  auto vc = std::dynamic_pointer_cast<actors::virtual_clock>(st.cfg.clock);
  if (!st.sys || d.count() < 0)
    return;
  if (!st.cfg.deterministic) {
    // Real scheduler with a virtual clock: move time and let the scheduler catch up.
    if (vc) {
      vc->advance(d);
      caf::anon_send(st.scheduler, actors::fire_atom::value);
    }
    return;
  }
  auto& sched = st.coordinator();
  auto target = st.cfg.clock->now() + d.count();
  // Moves both clocks to `t` and runs everything that becomes due.
  auto step_to = [&](persistence::time_ms t) {
    auto delta = t - st.cfg.clock->now();
    if (vc)
      vc->set(t);
    sched.run();
    if (delta > 0)
      sched.advance_time(std::chrono::duration_cast<caf::timespan>(std::chrono::milliseconds{delta}));
    sched.run();
    caf::anon_send(st.scheduler, actors::fire_atom::value);
    sched.run();
  };
  sched.run();
  // Step from one due timer to the next so that timers set by fired timers fire in
  // order within the same advance.
  std::optional<persistence::time_ms> last;
  for (;;) {
    auto next = st.request_from<std::optional<persistence::time_ms>>(
      st.scheduler, st.cfg.ask_timeout, actors::next_due_atom::value);
    if (!next || !*next || **next > target)
      break;
    if (last && **next <= *last && **next <= st.cfg.clock->now())
      break;  // nothing fired at this time (e.g. a timer waiting for a retry): move on
    last = **next;
    step_to(std::max(**next, st.cfg.clock->now()));
  }
  step_to(target);
}

}  // namespace longhaul
