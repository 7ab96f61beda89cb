//! The epoch loop: build (or restore) trunk, method and optimiser; per epoch let the method
//! prepare (cluster, reassign), stream the loader's batches through (method hook: SeLa's
//! relabelling) → step → backward → update, log, checkpoint every N steps and at every epoch end,
//! evaluate.
//!
//! Exact resumption: the data order is a function of (seed, epoch) (the sampler), augmentation
//! of (seed, epoch, record), torch's RNG (dropout) is re-seeded from (seed, step) before every
//! step, heads are seeded from (seed, epoch), and checkpoints carry weights, buffers, momentum,
//! pseudo-labels and the position in the epoch. A run killed at any moment and resumed therefore
//! replays the same batches with the same weights.
//!
//! Data-parallel runs (launched by torchrun, srun or mpirun; see `crate::dist`) do what PyTorch's
//! DistributedDataParallel does: rank 0's weights are broadcast at the start, its buffers before
//! every step, gradients are averaged over the ranks after every backward, every rank reads its
//! own share of each epoch (the sampler) and all ranks take the same number of steps. Rank 0
//! alone writes logs, checkpoints and evaluations; every rank resumes from the run directory.

use super::checkpoint::{self, named_vars, restore_vars, CheckpointMeta};
use super::config::TrainConfig;
use super::error::{io_err, Result, TrainError};
use super::evaluate::{evaluate, EvalSummary};
use super::features::ExtractOptions;
use super::metrics::MetricsLog;
use super::optim::Sgd;
use super::precision::Precision;
use crate::loader::rng::seed_of;
use crate::dist::reducer::Reducer;
use crate::dist::{self, sync, DistError, ProcessGroup, ReduceOp};
use crate::loader::gpu::{run_device_epoch, DecodeMode, DeviceLoader};
use crate::loader::{cpu_decoder_factory, run_epoch, LoaderConfig, Sampler, SamplerState};
use crate::method::{self, EpochContext};
use crate::model::{self, ModelConfig, Network};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use silt_shards::Dataset;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Tensor};

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub run_dir: std::path::PathBuf,
    pub method: String,
    pub epochs_done: u64,
    pub steps: u64,
    pub resumed_from_step: Option<u64>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub last_loss: Option<f64>,
    pub eval: Option<EvalSummary>,
    pub checkpoint: Option<std::path::PathBuf>,
}

pub fn device() -> Device {
    Device::cuda_if_available()
}

/// Builds the trunk the configuration describes in `vs`.
pub fn build_trunk(vs: &nn::VarStore, cfg: &TrainConfig) -> Result<Box<dyn Network>> {
    let arch = <model::Arch as clap::ValueEnum>::from_str(&cfg.arch, true).map_err(|e| TrainError::Config(format!("--arch {}: {e}", cfg.arch)))?;
    Ok(model::build(&vs.root(), &ModelConfig { arch, sobel: cfg.sobel, cifar_stem: cfg.crop <= 64 }))
}

pub fn train(cfg: &TrainConfig) -> Result<TrainSummary> {
    let started = Instant::now();
    let (_, group) = dist::init_from_env()?;
    let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.size()));
    let is_main = rank == 0;
    let sync_bn = world > 1 && (cfg.sync_bn || cfg.method == "deepercluster");
    crate::dist::sync_bn::enable(if sync_bn { group.clone() } else { None });
    let dev = device();
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    std::fs::create_dir_all(&cfg.run_dir).map_err(io_err(&cfg.run_dir))?;
    let ds = Arc::new(Dataset::open(&cfg.data)?);
    let records = cfg.limit.map_or(ds.len(), |l| l.min(ds.len()));
    if records == 0 {
        return Err(TrainError::Config(format!("{}: the dataset has no records", cfg.data.display())));
    }

    tch::manual_seed(seed_of(&[cfg.seed, 0x7A]) as i64 & i64::MAX);
    let mut vs = nn::VarStore::new(dev);
    let trunk = build_trunk(&vs, cfg)?;
    if let Some(p) = &cfg.pretrained {
        let report = model::export::load_torchvision(&mut vs, p).map_err(|e| TrainError::Config(format!("--pretrained: {e}")))?;
        tracing::info!("--pretrained {}: {report}", p.display());
    }
    let mut method = method::build(cfg, trunk.feature_dim(), dev)?;
    let mut opt = Sgd::new(named_vars(&vs, ""), cfg.sgd());

    // Resume from the run directory's latest checkpoint, if any.
    let (mut epoch, mut position, mut step, mut resumed_from, mut metrics_offset) = (0u64, 0u64, 0u64, None, None);
    let mut saved_world = world;
    let mut restored_method = false;
    if let Some(path) = checkpoint::latest(&cfg.run_dir)? {
        let ck = checkpoint::load(&path)?;
        if ck.meta.method != cfg.method {
            return Err(TrainError::Checkpoint { path, message: format!("the run directory holds a {} run, not {}", ck.meta.method, cfg.method) });
        }
        restore_vars(&vs, &ck.with_prefix("trunk."), "")?;
        opt.load_state("", &ck.with_prefix("optim.")).map_err(|m| TrainError::Checkpoint { path: path.clone(), message: m })?;
        method.load_state(&ck.with_prefix("method."), &ck.meta.method_state)?;
        (epoch, position, step, saved_world) = (ck.meta.epoch, ck.meta.position, ck.meta.step, ck.meta.world);
        resumed_from = Some(step);
        restored_method = position > 0;
        tracing::info!("resuming {} from {} (epoch {epoch}, {position} samples in, step {step})", cfg.method, path.display());
        metrics_offset = Some(ck.meta.metrics_offset);
    }
    let trunk_vars: Vec<Tensor> = named_vars(&vs, "").into_iter().map(|(_, t)| t).collect();
    // the BatchNorm statistics DistributedDataParallel re-broadcasts before every step
    let trunk_buffers: Vec<Tensor> = trunk_vars.iter().filter(|t| !t.requires_grad()).map(Tensor::shallow_clone).collect();
    if let Some(g) = &group {
        // every rank built (or restored) the same weights; rank 0's are the ones that count
        sync::broadcast_tensors(g, &trunk_vars, 0)?;
    }
    // the trunk's gradients are averaged while backward runs (SILT_GRAD_OVERLAP=0: after it)
    let mut reducer = match &group {
        Some(g) if std::env::var("SILT_GRAD_OVERLAP").map_or(true, |v| v != "0") => Some(Reducer::new(g.clone(), opt.params(), sync::BUCKET_BYTES)?),
        _ => None,
    };
    method.attach(&named_vars(&vs, ""))?;
    let mut log = if is_main { MetricsLog::open(&cfg.run_dir, metrics_offset).map_err(io_err(&cfg.run_dir))? } else { MetricsLog::discard(&cfg.run_dir) };
    if resumed_from.is_none() && is_main {
        std::fs::write(cfg.run_dir.join("config.json"), serde_json::to_vec_pretty(cfg).unwrap_or_default()).map_err(io_err(&cfg.run_dir))?;
        log.write("run", json!({ "method": cfg.method, "arch": cfg.arch, "records": records, "world": world, "config": cfg })).map_err(io_err(log.path()))?;
    }

    // The methods' snapshots are shared out over the ranks; evaluation runs on rank 0 alone.
    let extract = || ExtractOptions { crop: cfg.crop, batch_size: 256, workers: cfg.workers, device: dev, group: group.clone() };
    let eval_extract = || ExtractOptions { group: None, ..extract() };
    let eval_ds = match &cfg.eval_data {
        Some(p) => Some(Arc::new(Dataset::open(p)?)),
        None => None,
    };
    if resumed_from.is_none() && is_main {
        if let Some(eds) = &eval_ds {
            // The randomly initialised network: the baseline every learned number is read against.
            let e = evaluate(trunk.as_ref(), &ds, records, eds, cfg, &eval_extract())?;
            log.write("eval", e.to_json(-1)).map_err(io_err(log.path()))?;
        }
    }

    let pipeline = Arc::new(method.pipeline());
    let loader_cfg = LoaderConfig { batch_size: cfg.batch_size, workers: cfg.workers, prefetch: 4, seed: cfg.seed, drop_last: false };
    let device_loader = gpu_loader(cfg.decode, dev)?;
    let (mut images, mut last_loss, mut last_eval, mut last_ckpt) = (0u64, None, None, None);
    let train_started = Instant::now();
    'epochs: while epoch < cfg.epochs {
        let epoch_started = Instant::now();
        let mut ctx = EpochContext { epoch, cfg, trunk: trunk.as_ref(), ds: &ds, records, extract: extract(), log: &mut log };
        let kind = method.begin_epoch(&mut ctx, restored_method)?;
        restored_method = false;
        if let Some(g) = &group {
            sync::broadcast_tensors(g, method.parameters(), 0)?;
            check_same_labels(g, method.pseudo_labels().as_deref(), epoch)?;
        }
        let sampler = Sampler::new(kind, records, cfg.seed, rank, world)?;
        let indices = sampler.epoch_indices(epoch);
        let total = indices.len() as u64;
        // A resume with another number of ranks re-deals what the old ranks had not read; that
        // epoch is then finished without mid-epoch checkpoints (positions would not line up).
        let elastic = position > 0 && saved_world != world;
        let mut rest = if elastic {
            tracing::info!("resuming epoch {epoch} on {world} ranks (checkpoint taken on {saved_world}): re-dealing its unread samples");
            sampler.resume(&SamplerState { seed: cfg.seed, epoch, position, world: saved_world })?
        } else {
            indices[(position as usize).min(indices.len())..].to_vec()
        };
        saved_world = world;
        if let Some(g) = &group {
            // every rank must take the same number of steps: cut to the shortest share
            let shortest = g.all_reduce_f64(rest.len() as f64, ReduceOp::Min)? as usize;
            rest.truncate(shortest);
        }
        let steps_in_epoch = total.div_ceil(cfg.batch_size as u64);
        let bar = progress_bar(steps_in_epoch, epoch, cfg.epochs);
        if let Some(b) = &bar {
            b.set_position(position / cfg.batch_size as u64);
        }
        let (mut loss_sum, mut loss_n) = (0.0, 0u64);
        let batches: Box<dyn Iterator<Item = crate::loader::Batch>> = match &device_loader {
            Some(l) => Box::new(run_device_epoch(l.clone(), ds.clone(), pipeline.clone(), rest, epoch, cfg.batch_size, cfg.seed, loader_cfg.prefetch)),
            None => Box::new(run_epoch(ds.clone(), pipeline.clone(), rest, epoch, &loader_cfg, cpu_decoder_factory(true))),
        };
        for batch in batches {
            let consumed = (batch.len() + batch.skipped) as u64;
            if batch.is_empty() && group.is_none() {
                position += consumed;
                continue;
            }
            let mut ctx = EpochContext { epoch, cfg, trunk: trunk.as_ref(), ds: &ds, records, extract: extract(), log: &mut log };
            method.before_step(&mut ctx, step)?;
            let lr = cfg.schedule.at(epoch as f64 + position as f64 / total.max(1) as f64);
            tch::manual_seed(seed_of(&[cfg.seed, step, 0xD0 + rank as u64]) as i64 & i64::MAX);
            opt.zero_grad();
            method.zero_grad();
            let Some(out) = data_parallel_step(group.as_deref(), reducer.as_mut(), &trunk_buffers, &opt, method.as_mut(), trunk.as_ref(), &batch, dev, cfg.precision)? else {
                // this rank's batch was empty (undecodable records): it took part with zero gradients
                opt.step(lr);
                method.update(lr);
                step += 1;
                position += consumed;
                continue;
            };
            opt.step(lr);
            method.update(lr);
            let loss = out.loss.double_value(&[]);
            if !loss.is_finite() {
                return Err(TrainError::Diverged { step, loss });
            }
            step += 1;
            position += consumed;
            images += batch.len() as u64;
            loss_sum += loss;
            loss_n += 1;
            last_loss = Some(loss);
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(format!("loss {loss:.3}"));
            }
            if step % cfg.log_every.max(1) == 0 || step == 1 {
                let secs = train_started.elapsed().as_secs_f64();
                log.write("step", json!({ "epoch": epoch, "step": step, "loss": loss, "lr": lr, "accuracy": out.accuracy, "batch_hash": batch_hash(&batch.indices),
                    "images_per_s": (images * world as u64) as f64 / secs.max(1e-9), "time_s": started.elapsed().as_secs_f64() }))
                    .map_err(io_err(log.path()))?;
                if bar.is_none() {
                    tracing::info!("epoch {epoch} step {step}: loss {loss:.4} lr {lr:.4}");
                }
            }
            let stop = cfg.max_steps.is_some_and(|m| step >= m);
            if ((cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0) || stop) && is_main && !elastic {
                last_ckpt = Some(save(&vs, &opt, method.as_ref(), cfg, epoch, position, step, world, &mut log)?);
            }
            if stop {
                if let Some(b) = &bar {
                    b.abandon();
                }
                break 'epochs;
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let secs = epoch_started.elapsed().as_secs_f64();
        let mean = if loss_n > 0 { loss_sum / loss_n as f64 } else { f64::NAN };
        log.write("epoch", json!({ "epoch": epoch, "loss": mean, "lr": cfg.schedule.at(epoch as f64), "seconds": secs, "images": total }))
            .map_err(io_err(log.path()))?;
        tracing::info!("epoch {epoch}: mean loss {mean:.4}, {secs:.1}s");
        epoch += 1;
        position = 0;
        if !is_main {
            continue;
        }
        if let Some(eds) = &eval_ds {
            let e = evaluate(trunk.as_ref(), &ds, records, eds, cfg, &eval_extract())?;
            log.write("eval", e.to_json(epoch as i64 - 1)).map_err(io_err(log.path()))?;
            last_eval = Some(e);
        }
        last_ckpt = Some(save(&vs, &opt, method.as_ref(), cfg, epoch, 0, step, world, &mut log)?);
        if let Some(labels) = method.pseudo_labels() {
            write_pseudo_labels(&ds, &cfg.run_dir, &labels)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainSummary {
        run_dir: cfg.run_dir.clone(),
        method: cfg.method.clone(),
        epochs_done: epoch,
        steps: step,
        resumed_from_step: resumed_from,
        seconds,
        images_per_second: (images * world as u64) as f64 / train_started.elapsed().as_secs_f64().max(1e-9),
        last_loss,
        eval: last_eval,
        checkpoint: last_ckpt,
    })
}

/// One step's forward and backward; in a data-parallel run also the buffer broadcast before and
/// the gradient averaging after. None when this rank's batch is empty (it still takes part in the
/// averaging, with zero gradients).
#[allow(clippy::too_many_arguments)]
fn data_parallel_step(
    group: Option<&ProcessGroup>,
    mut reducer: Option<&mut Reducer>,
    trunk_buffers: &[Tensor],
    opt: &Sgd,
    method: &mut dyn method::Method,
    trunk: &dyn Network,
    batch: &crate::loader::Batch,
    dev: Device,
    precision: Precision,
) -> Result<Option<method::StepOutput>> {
    // forward and loss under autocast (bf16), backward outside it, as in PyTorch
    let forward = |method: &mut dyn method::Method| -> Result<method::StepOutput> {
        let _amp = precision.enter(dev);
        let out = method.step(trunk, batch, dev)?;
        // a SyncBatchNorm layer whose collective failed (a rank died) recorded why
        match dist::sync_bn::take_failure() {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    };
    method.plan_step(batch, dev)?;
    let Some(g) = group else {
        let out = forward(method)?;
        out.loss.f_backward()?;
        return Ok(Some(out));
    };
    // DistributedDataParallel's broadcast_buffers: BatchNorm statistics follow rank 0
    sync::broadcast_tensors(g, trunk_buffers, 0)?;
    if let Some(r) = reducer.as_mut() {
        r.prepare()?;
    }
    let out = if batch.is_empty() {
        None
    } else {
        let out = forward(method)?;
        // the backward of a collective (SyncBatchNorm's, SimCLR's gathered projections) talks to
        // the other ranks too: a dead one is an error naming this rank, not a panic
        out.loss.f_backward().map_err(|e| DistError::Collective { rank: g.rank(), world: g.size(), op: "backward", message: e.to_string() })?;
        Some(out)
    };
    let leaves = method.step_leaves();
    match reducer {
        Some(r) => {
            r.finish()?;
            sync::average_gradients(g, method.parameters().iter().chain(&leaves), sync::BUCKET_BYTES)?;
        }
        None => sync::average_gradients(g, opt.params().iter().chain(method.parameters()).chain(&leaves), sync::BUCKET_BYTES)?,
    }
    Ok(out)
}

/// Clustering runs on every rank from the same gathered features and seed, so the labels must
/// agree; if they do not (different hardware, non-deterministic kernels), stop rather than train
/// each rank towards different targets.
fn check_same_labels(g: &ProcessGroup, labels: Option<&[i64]>, epoch: u64) -> Result<()> {
    let Some(labels) = labels else {
        return Ok(());
    };
    let mine = fnv1a(labels.iter().map(|&l| l as u64)) as i64;
    let all: Vec<i64> = Vec::try_from(g.all_gather(&Tensor::from_slice(&[mine]))?)?;
    if all.iter().any(|&x| x != mine) {
        return Err(TrainError::Config(format!("epoch {epoch}: the ranks' pseudo-labels differ (hashes {all:?}); clustering was not deterministic across ranks")));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn save(vs: &nn::VarStore, opt: &Sgd, method: &dyn method::Method, cfg: &TrainConfig, epoch: u64, position: u64, step: u64, world: usize, log: &mut MetricsLog) -> Result<std::path::PathBuf> {
    let mut tensors = named_vars(vs, "trunk.");
    tensors.extend(opt.state("optim."));
    let (mt, mstate) = method.state();
    tensors.extend(mt.into_iter().map(|(n, t)| (format!("method.{n}"), t)));
    let meta = CheckpointMeta {
        format: checkpoint::FORMAT_VERSION,
        method: cfg.method.clone(),
        epoch,
        position,
        world,
        step,
        seed: cfg.seed,
        metrics_offset: log.offset().map_err(io_err(log.path()))?,
        method_state: mstate,
        config: serde_json::to_value(cfg).unwrap_or_default(),
    };
    checkpoint::save(&cfg.run_dir, &meta, &tensors, cfg.keep_checkpoints)
}

/// `pseudo_labels.tsv`: record id, key and cluster, as DeepCluster and SeLa release them.
fn write_pseudo_labels(ds: &Dataset, run_dir: &std::path::Path, labels: &[i64]) -> Result<()> {
    let path = run_dir.join("pseudo_labels.tsv");
    let tmp = run_dir.join(".pseudo_labels.tsv.tmp");
    let mut text = String::from("id\tkey\tlabel\n");
    for (i, &l) in labels.iter().enumerate() {
        let r = ds.get(i as u64)?;
        text.push_str(&format!("{}\t{}\t{l}\n", r.id, r.key.replace(['\t', '\n'], " ")));
    }
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// FNV-1a of a batch's sample indices: lets tests (and people) check that a resumed run reads
/// the same batches as an uninterrupted one.
fn batch_hash(indices: &[u64]) -> String {
    format!("{:016x}", fnv1a(indices.iter().copied()))
}

/// FNV-1a over the little-endian bytes of `values`.
fn fnv1a(values: impl Iterator<Item = u64>) -> u64 {
    values.flat_map(u64::to_le_bytes).fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn progress_bar(steps: u64, epoch: u64, epochs: u64) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(steps);
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {per_sec} ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        b
    })
}

/// The trunk of a checkpoint (a `.safetensors` path or a run directory), rebuilt from the
/// configuration saved in it, with its weights; plus that configuration.
pub fn trunk_from_checkpoint(path: &std::path::Path) -> Result<(nn::VarStore, Box<dyn Network>, TrainConfig)> {
    let ck = checkpoint::load(path)?;
    let cfg: TrainConfig = serde_json::from_value(ck.meta.config.clone())
        .map_err(|e| TrainError::Checkpoint { path: ck.path.clone(), message: format!("its saved configuration is unreadable: {e}") })?;
    let vs = nn::VarStore::new(device());
    let trunk = build_trunk(&vs, &cfg)?;
    restore_vars(&vs, &ck.with_prefix("trunk."), "")?;
    Ok((vs, trunk, cfg))
}

/// The device loader `--decode` asks for: None = the CPU worker pool (`cpu`, or `auto` where
/// nvJPEG or CUDA is missing, which is logged).
fn gpu_loader(mode: DecodeMode, dev: Device) -> Result<Option<Arc<std::sync::Mutex<DeviceLoader>>>> {
    if mode == DecodeMode::Cpu {
        return Ok(None);
    }
    let (loader, why_not) = DeviceLoader::new(dev, mode)?;
    match loader.gpu_backend() {
        Some(backend) => {
            tracing::info!("decode: nvJPEG ({backend} backend), augmentation batched on {dev:?}");
            Ok(Some(Arc::new(std::sync::Mutex::new(loader))))
        }
        None => {
            tracing::info!("decode auto: CPU workers ({})", why_not.unwrap_or_default());
            Ok(None)
        }
    }
}
