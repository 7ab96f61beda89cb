// A small C ABI over torch's own c10d (TCPStore -> PrefixStore -> ProcessGroup with a Gloo
// backend), so that Rust drives PyTorch's distributed engine directly. Tensors cross the
// boundary as `at::Tensor*`, which is what tch's `Tensor::as_mut_ptr()` points at.
//
// Rules (see ../shared/reference/distributed-spike/REPORT.md):
// - never construct or call gloo types: gloo is compiled into libtorch_cpu and only a
//   declaration stub (csrc/gloo-stub) is on the include path;
// - a *list* given to c10d's allreduce means "replicas of one tensor", so every entry point
//   here takes one tensor, or uses the coalesced form for a bucket of different tensors;
// - errors come back as -1 / NULL with the message (no C++ backtrace) in silt_c10d_last_error.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SILT_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {
thread_local std::string g_last_error;

int fail(const char* where, const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    g_last_error = std::string(where) + ": " + ce->what_without_backtrace();
  } else {
    g_last_error = std::string(where) + ": " + e.what();
  }
  return -1;
}

c10d::ReduceOp to_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::PRODUCT;
    case 2: return c10d::ReduceOp::MIN;
    case 3: return c10d::ReduceOp::MAX;
    case 4: return c10d::ReduceOp::AVG;
    default: throw std::invalid_argument("unknown reduce op");
  }
}

// One process group over `store` (already prefixed with the group's name): Gloo for CPU
// tensors and, in builds with NCCL (cargo feature `cuda`) and a device index >= 0, NCCL for CUDA
// tensors on that device (Python's "cpu:gloo,cuda:nccl").
c10::intrusive_ptr<c10d::ProcessGroup> make_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  int rank, int size, std::chrono::milliseconds timeout,
                                                  const std::string& name, int device_index) {
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  // create_default honours GLOO_SOCKET_IFNAME (multi-node runs must set it).
  auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
#ifdef SILT_C10D_NCCL
  if (device_index >= 0) {
    auto nopts = c10d::ProcessGroupNCCL::Options::create();
    nopts->timeout = timeout;
    auto nccl_store = c10::make_intrusive<c10d::PrefixStore>("cuda/", store);
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(nccl_store, rank, size, nopts);
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
    pg->setBoundDeviceId(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device_index)));
  }
#else
  if (device_index >= 0) throw std::invalid_argument("this build has no NCCL (build with --features cuda)");
#endif
  pg->setGroupName(name);
  // lets the _c10d_functional ops (used for the autograd all-gather) find the group by name
  c10d::register_process_group(name, pg);
  return pg;
}
}  // namespace

struct silt_pg {
  c10::intrusive_ptr<c10d::Store> tcp;  // shared by sub-groups
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::string name;
  std::chrono::milliseconds timeout;
  int device_index;
};

struct silt_work {
  c10::intrusive_ptr<c10d::Work> work;
};

extern "C" {

const char* silt_c10d_last_error() { return g_last_error.c_str(); }

int silt_c10d_has_nccl() {
#ifdef SILT_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// Rank 0 serves the TCPStore on master_addr:port unless torchrun's agent already does.
// device_index: the CUDA device NCCL binds to (LOCAL_RANK), or -1 for Gloo only.
silt_pg* silt_c10d_init(const char* master_addr, uint16_t port, int rank, int size,
                        int64_t timeout_ms, const char* name, int device_index) {
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = port;
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    bool agent_store = agent && std::string(agent) == "True";
    so.isServer = rank == 0 && !agent_store;
    so.numWorkers = size;
    so.waitWorkers = true;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), so);
    std::string n(name);
    auto store = c10::make_intrusive<c10d::PrefixStore>(n + "/", tcp);
    auto pg = make_group(store, rank, size, timeout, n, device_index);
    return new silt_pg{tcp, pg, n, timeout, device_index};
  } catch (const std::exception& e) {
    fail("init", e);
    return nullptr;
  }
}

// A group of some of the parent's ranks; only those ranks call this, each with its index in
// the new group. Every member must pass the same name.
silt_pg* silt_c10d_subgroup(silt_pg* parent, int rank, int size, const char* name) {
  try {
    std::string n(name);
    auto store = c10::make_intrusive<c10d::PrefixStore>(n + "/", parent->tcp);
    auto pg = make_group(store, rank, size, parent->timeout, n, parent->device_index);
    return new silt_pg{parent->tcp, pg, n, parent->timeout, parent->device_index};
  } catch (const std::exception& e) {
    fail("subgroup", e);
    return nullptr;
  }
}

int silt_c10d_rank(silt_pg* g) { return g->pg->getRank(); }
int silt_c10d_size(silt_pg* g) { return g->pg->getSize(); }

silt_work* silt_c10d_all_reduce_async(silt_pg* g, at::Tensor* t, int op) {
  try {
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = to_op(op);
    return new silt_work{g->pg->allreduce(v, o)};
  } catch (const std::exception& e) {
    fail("all_reduce", e);
    return nullptr;
  }
}

int silt_c10d_wait(silt_work* w) {
  try {
    w->work->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("wait", e);
  }
}

void silt_c10d_work_free(silt_work* w) { delete w; }

int silt_c10d_all_reduce(silt_pg* g, at::Tensor* t, int op) {
  silt_work* w = silt_c10d_all_reduce_async(g, t, op);
  if (!w) return -1;
  int rc = silt_c10d_wait(w);
  delete w;
  return rc;
}

// Each tensor is reduced element-wise across ranks.
int silt_c10d_all_reduce_coalesced(silt_pg* g, at::Tensor** ts, size_t n, int op) {
  try {
    std::vector<at::Tensor> v;
    for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
    c10d::AllreduceCoalescedOptions o;
    o.reduceOp = to_op(op);
    g->pg->allreduce_coalesced(v, o)->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("all_reduce_coalesced", e);
  }
}

int silt_c10d_broadcast(silt_pg* g, at::Tensor* t, int root) {
  try {
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    g->pg->broadcast(v, o)->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("broadcast", e);
  }
}

// out: [size * n, ...] receives every rank's `in` ([n, ...]) in rank order.
int silt_c10d_all_gather(silt_pg* g, at::Tensor* out, at::Tensor* in) {
  try {
    g->pg->_allgather_base(*out, *in)->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("all_gather", e);
  }
}

// in: [size * n, ...]; out: [n, ...] receives the reduction of every rank's block `rank`.
int silt_c10d_reduce_scatter(silt_pg* g, at::Tensor* out, at::Tensor* in, int op) {
  try {
    c10d::ReduceScatterOptions o;
    o.reduceOp = to_op(op);
    g->pg->_reduce_scatter_base(*out, *in, o)->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("reduce_scatter", e);
  }
}

int silt_c10d_barrier(silt_pg* g) {
  try {
    g->pg->barrier()->wait();
    return 0;
  } catch (const std::exception& e) {
    return fail("barrier", e);
  }
}

// All-gather that autograd differentiates (its backward reduce-scatters the gradient): the
// dispatcher op torch.distributed.nn uses. Returns a new tensor the caller owns
// (tch: Tensor::from_ptr).
at::Tensor* silt_c10d_all_gather_autograd(silt_pg* g, const at::Tensor* in) {
  try {
    static auto gather = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("_c10d_functional_autograd::all_gather_into_tensor", "")
                             .typed<at::Tensor(const at::Tensor&, int64_t, const std::string&)>();
    static auto wait = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("_c10d_functional::wait_tensor", "")
                           .typed<at::Tensor(const at::Tensor&)>();
    at::Tensor out = gather.call(*in, g->pg->getSize(), g->name);
    out = wait.call(out);
    return new at::Tensor(std::move(out));
  } catch (const std::exception& e) {
    fail("all_gather_autograd", e);
    return nullptr;
  }
}

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// Gradient reducer that overlaps the all-reduce with backward (DistributedDataParallel's
// Reducer, reduced to what silt needs). Parameters are laid out in buckets of about
// `bucket_bytes`, in reverse order (the last layers' gradients arrive first). A hook on each
// parameter copies its gradient into its bucket; a bucket whose gradients are all there is sent
// at once — strictly in bucket order, so every rank issues the same collectives in the same
// order — while backward goes on. finish() sends what is left (gradients that never arrived are
// zeros: unused parameters, or a rank whose batch was empty), waits, and writes the averages
// into the parameters' .grad.
struct silt_reducer {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::vector<at::Tensor> params;
  std::vector<std::vector<size_t>> buckets;  // parameter indices per bucket
  std::vector<size_t> bucket_of, offset_of;  // per parameter
  std::vector<at::Tensor> flats;             // one flat buffer per bucket
  std::vector<size_t> pending;               // per bucket: gradients still missing this step
  std::vector<bool> arrived;                 // per parameter
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::vector<unsigned> hooks;
  size_t next = 0;          // first bucket not yet sent
  size_t sent_early = 0;    // buckets sent from a hook (during backward) in this step
  bool armed = false;       // hooks act only between prepare() and finish()
  std::string error;        // a failure inside a hook, reported by finish()
  std::mutex m;

  void send_ready() {
    while (next < buckets.size() && pending[next] == 0) {
      std::vector<at::Tensor> v{flats[next]};
      works.push_back(pg->allreduce(v));
      ++next;
    }
  }

  void on_grad(size_t i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(m);
    if (!armed || arrived[i] || !error.empty()) return;
    try {
      size_t b = bucket_of[i];
      flats[b].narrow(0, offset_of[i], params[i].numel()).copy_(grad.reshape({-1}));
      arrived[i] = true;
      --pending[b];
      size_t before = next;
      send_ready();
      sent_early += next - before;
    } catch (const std::exception& e) {
      error = std::string("reducer hook: ") + e.what();
    }
  }
};

extern "C" {

silt_reducer* silt_reducer_new(silt_pg* g, at::Tensor** ps, size_t n, size_t bucket_bytes) {
  try {
    auto* r = new silt_reducer();
    r->pg = g->pg;
    for (size_t i = 0; i < n; ++i) r->params.push_back(*ps[i]);
    r->bucket_of.resize(n);
    r->offset_of.resize(n);
    r->arrived.assign(n, false);
    size_t bytes = 0;
    for (size_t k = n; k-- > 0;) {
      const at::Tensor& p = r->params[k];
      bool fresh = r->buckets.empty() || bytes >= bucket_bytes ||
                   r->params[r->buckets.back().front()].scalar_type() != p.scalar_type();
      if (fresh) {
        r->buckets.emplace_back();
        bytes = 0;
      }
      r->bucket_of[k] = r->buckets.size() - 1;
      size_t offset = 0;
      for (size_t j : r->buckets.back()) offset += r->params[j].numel();
      r->offset_of[k] = offset;
      r->buckets.back().push_back(k);
      bytes += p.numel() * p.element_size();
    }
    for (auto& b : r->buckets) {
      int64_t numel = 0;
      for (size_t j : b) numel += r->params[j].numel();
      r->flats.push_back(at::zeros({numel}, r->params[b.front()].options().requires_grad(false)));
    }
    for (size_t i = 0; i < n; ++i) {
      r->hooks.push_back(r->params[i].register_hook([r, i](at::Tensor grad) { r->on_grad(i, grad); }));
    }
    return r;
  } catch (const std::exception& e) {
    fail("reducer", e);
    return nullptr;
  }
}

size_t silt_reducer_buckets(silt_reducer* r) { return r->buckets.size(); }

// Arms the hooks for one step's backward.
int silt_reducer_prepare(silt_reducer* r) {
  std::lock_guard<std::mutex> lock(r->m);
  try {
    for (auto& f : r->flats) f.zero_();
    r->pending.clear();
    for (auto& b : r->buckets) r->pending.push_back(b.size());
    r->arrived.assign(r->params.size(), false);
    r->works.clear();
    r->next = 0;
    r->sent_early = 0;
    r->error.clear();
    r->armed = true;
    return 0;
  } catch (const std::exception& e) {
    return fail("reducer prepare", e);
  }
}

// Sends the buckets still waiting (missing gradients count as zeros), waits for all, and sets
// every parameter's .grad to the average over the ranks. Returns the number of buckets that
// were sent during backward through *sent_early.
int silt_reducer_finish(silt_reducer* r, size_t* sent_early) {
  std::lock_guard<std::mutex> lock(r->m);
  r->armed = false;
  try {
    if (!r->error.empty()) throw std::runtime_error(r->error);
    *sent_early = r->sent_early;
    for (auto& p : r->pending) p = 0;
    r->send_ready();
    for (auto& w : r->works) w->wait();
    double world = static_cast<double>(r->pg->getSize());
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < r->params.size(); ++i) {
      at::Tensor& p = r->params[i];
      at::Tensor avg = r->flats[r->bucket_of[i]].narrow(0, r->offset_of[i], p.numel()).view(p.sizes()) / world;
      at::Tensor& grad = p.mutable_grad();
      if (grad.defined()) {
        grad.copy_(avg);
      } else {
        grad = avg.clone();
      }
    }
    return 0;
  } catch (const std::exception& e) {
    return fail("all_reduce", e);
  }
}

void silt_reducer_free(silt_reducer* r) {
  if (!r) return;
  for (size_t i = 0; i < r->params.size(); ++i) {
    try {
      r->params[i].remove_hook(r->hooks[i]);
    } catch (...) {
    }
  }
  delete r;
}

void silt_c10d_free(silt_pg* g) {
  if (!g) return;
  try {
    c10d::unregister_process_group(g->name);
  } catch (...) {
  }
  delete g;
}

}  // extern "C"
