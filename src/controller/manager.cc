#include "controller/manager.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "controller/plan_reconciler.h"
#include "controller/routing.h"
#include "controller/runner.h"
#include "kube/informer.h"

namespace vmimport::controller {

namespace {

// Stream events reach the import reconciler, which is made after the server it observes.
class ForwardingObserver final : public imageserver::StreamObserver {
 public:
  void Set(imageserver::StreamObserver* target) { target_ = target; }
  // imageserver::StreamObserver
  void OnStreamStarted(const imageserver::StreamInfo& info) override {
    if (auto* t = target_.load()) {
      t->OnStreamStarted(info);
    }
  }
  void OnProgress(const imageserver::StreamProgress& progress) override {
    if (auto* t = target_.load()) {
      t->OnProgress(progress);
    }
  }
  void OnStreamFinished(const imageserver::StreamResult& result) override {
    if (auto* t = target_.load()) {
      t->OnStreamFinished(result);
    }
  }

 private:
  std::atomic<imageserver::StreamObserver*> target_{nullptr};
};

// One set of informer + queue + reconciler + runner per source kind.
struct SourceController {
  source::SourceKind kind{};
  std::unique_ptr<kube::Informer> informer;
  std::unique_ptr<WorkQueue> queue;
  std::unique_ptr<SourceReconciler> reconciler;
  std::unique_ptr<Runner> runner;
};

}  // namespace

Manager::Manager(kube::Client& client, kube::EventSink& events, const core::Clock& clock,
                 core::Logger log, ManagerOptions options, Providers providers,
                 core::Metrics* metrics)
    : client_(client),
      events_(events),
      clock_(clock),
      log_(std::move(log)),
      options_(std::move(options)),
      providers_(std::move(providers)),
      metrics_(metrics) {}

core::Status Manager::Run(std::stop_token leading,
                          const std::function<void(const TermView&)>& on_started,
                          const std::function<void()>& on_stopping) {
  const std::string& ns = options_.watch_namespace;
  std::vector<SourceController> controllers;
  for (const auto& [kind, checker] : providers_.checkers) {
    SourceController c;
    c.kind = kind;
    c.informer = std::make_unique<kube::Informer>(client_, SourceResource(kind), ns, log_);
    c.queue = std::make_unique<WorkQueue>(clock_);
    c.reconciler = std::make_unique<SourceReconciler>(kind, client_, *c.informer, checker, events_,
                                                      clock_, log_, options_.source);
    auto* queue = c.queue.get();
    c.informer->AddHandlers({
        .on_add = [queue](const kube::Json& o) { queue->Add(kube::ObjectKeyOf(o)); },
        .on_update =
            [queue](const kube::Json& old_obj, const kube::Json& new_obj) {
              // Status writes (ours) do not change the generation: no re-check for them.
              if (GenerationChanged(old_obj, new_obj)) {
                queue->Add(kube::ObjectKeyOf(new_obj));
              }
            },
        .on_delete = [queue](const kube::Json& o) { queue->Add(kube::ObjectKeyOf(o)); },
    });
    c.runner = std::make_unique<Runner>(std::string(source::SourceKindName(kind)) + "-source",
                                        *c.queue, *c.reconciler, log_);
    controllers.push_back(std::move(c));
  }
  // Secrets: metadata only (no data in memory); a change re-checks the sources naming it.
  kube::Informer secrets(client_, SecretResource(), ns, log_,
                         kube::InformerOptions{.metadata_only = true});
  auto on_secret = [&controllers](const kube::Json& secret) {
    const std::string key = kube::ObjectKeyOf(secret);
    for (auto& c : controllers) {
      for (const std::string& source_key : c.reconciler->SourcesReferencingSecret(key)) {
        c.queue->Add(source_key);
      }
    }
  };
  secrets.AddHandlers(
      {.on_add = on_secret,
       .on_update = [&on_secret](const kube::Json&, const kube::Json& s) { on_secret(s); },
       .on_delete = on_secret});
  // Imports: the image server (its streams belong to the leader), the imports and the images.
  ForwardingObserver observer;
  auto server = imageserver::ImageServer::Start(options_.image_server, &observer, clock_, log_);
  if (!server) {
    return core::MakeError(server.error().Wrap("starting the image server"));
  }
  log_.Info("image server listening", {{"port", (*server)->port()}});
  kube::Informer imports(client_, ImportResource(), ns, log_);
  kube::Informer images(client_, ImageResource(), ns, log_);
  WorkQueue import_queue(clock_);
  ImportReconciler import_reconciler(client_, imports, images, providers_.importers, **server,
                                     import_queue, events_, clock_, log_, options_.import);
  observer.Set(&import_reconciler);
  auto enqueue_import = [&import_queue](const kube::Json& o) {
    import_queue.Add(kube::ObjectKeyOf(o));
  };
  imports.AddHandlers(
      {.on_add = enqueue_import,
       .on_update = [&](const kube::Json&, const kube::Json& o) { enqueue_import(o); },
       .on_delete = enqueue_import});
  // An image that changes wakes the import that owns it.
  auto image_changed = [&import_queue](const kube::Json& image) {
    for (const auto& key : ImportsOwningImage(image)) {
      import_queue.Add(key);
    }
  };
  images.AddHandlers(
      {.on_add = image_changed,
       .on_update = [&](const kube::Json&, const kube::Json& o) { image_changed(o); },
       .on_delete = image_changed});
  // A source whose readiness changes wakes the imports that name it (instead of their requeue).
  for (auto& c : controllers) {
    c.informer->AddHandlers(
        {.on_update = [&imports, &import_queue](const kube::Json& old_src, const kube::Json& src) {
          if (!SourceReadinessChanged(old_src, src)) {
            return;
          }
          for (const auto& key : ImportsNamingSource(imports.List(), src)) {
            import_queue.Add(key);
          }
        }});
  }
  Runner import_runner("import", import_queue, import_reconciler, log_);
  import_reconciler.SetMetrics(metrics_);
  // ImportPlans (issue 23): a plan wakes on its own changes and on every change of its imports.
  kube::Informer plans(client_, PlanResource(), ns, log_);
  WorkQueue plan_queue(clock_);
  PlanReconciler plan_reconciler(client_, plans, providers_.importers, events_, clock_, log_);
  auto enqueue_plan = [&plan_queue](const kube::Json& o) { plan_queue.Add(kube::ObjectKeyOf(o)); };
  plans.AddHandlers({.on_add = enqueue_plan,
                     .on_update = [&](const kube::Json&, const kube::Json& o) { enqueue_plan(o); },
                     .on_delete = enqueue_plan});
  auto import_changed_for_plan = [&plan_queue](const kube::Json& o) {
    if (const std::string plan = PlanOfImport(o); !plan.empty()) {
      plan_queue.Add(plan);
    }
  };
  imports.AddHandlers(
      {.on_add = import_changed_for_plan,
       .on_update = [&](const kube::Json&, const kube::Json& o) { import_changed_for_plan(o); },
       .on_delete = import_changed_for_plan});
  Runner plan_runner("import-plan", plan_queue, plan_reconciler, log_);

  for (auto& c : controllers) {
    c.informer->Start();
  }
  images.Start();
  imports.Start();
  plans.Start();
  for (auto& c : controllers) {
    c.informer->WaitForSync(leading, std::chrono::hours(24));
  }
  images.WaitForSync(leading, std::chrono::hours(24));
  imports.WaitForSync(leading, std::chrono::hours(24));
  plans.WaitForSync(leading, std::chrono::hours(24));
  secrets.Start();
  for (auto& c : controllers) {
    c.runner->Start(options_.workers);
  }
  import_runner.Start(options_.workers);
  plan_runner.Start(options_.workers);
  TermView view{.imports = &imports,
                .queues = {{"import", &import_queue}, {"import-plan", &plan_queue}},
                .server = server->get()};
  for (auto& c : controllers) {
    view.queues.emplace_back(std::string(source::SourceKindName(c.kind)) + "-source",
                             c.queue.get());
  }
  if (on_started) {
    on_started(view);
  }
  log_.Info("controllers started");
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait(lock, leading, [] { return false; });
  if (on_stopping) {
    on_stopping();
  }
  log_.Info("stopping controllers");
  plan_runner.Stop();
  import_runner.Stop();
  for (auto& c : controllers) {
    c.runner->Stop();  // waits for running reconciles: nothing is left half-written
  }
  secrets.Stop();
  plans.Stop();
  imports.Stop();
  images.Stop();
  for (auto& c : controllers) {
    c.informer->Stop();
  }
  observer.Set(nullptr);
  return {};
}

}  // namespace vmimport::controller
