//! SimCLR v1 (methods.md §2.8): two views of every image, both through the trunk in one batch
//! (BatchNorm over all 2N, as SimCLR's global BN on one process), SimCLR's projection head (§1.9:
//! Linear, BN, ReLU, Linear, BN), NT-Xent over the batch with temperature T.
//! `--lars` (§1.11) is an optimiser setting: the trainer's SGD and this head's both apply it.

use super::contrastive::{contrastive_pipeline, l2_normalize, nt_xent, nt_xent_against, HeadKind, Projection};
use crate::dist::ReduceOp;
use super::{EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Pipeline, SamplerKind};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::optim::Sgd;
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

pub struct SimClr {
    cfg: TrainConfig,
    head_vs: nn::VarStore,
    head: Projection,
    head_opt: Sgd,
}

impl SimClr {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Self {
        tch::manual_seed(seed_of(&[cfg.seed, 0x5C1]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let head = Projection::new(&(head_vs.root() / "head"), HeadKind::SimclrMlp, feature_dim, cfg.contrastive.dim);
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        SimClr { cfg: cfg.clone(), head_vs, head, head_opt }
    }
}

impl Method for SimClr {
    fn name(&self) -> &'static str {
        "simclr"
    }

    fn pipeline(&self) -> Pipeline {
        contrastive_pipeline("simclr", &self.cfg, 2)
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        Ok(super::instance_sampler(ctx))
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let x1 = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let x2 = batch.view_f32(1, IMAGENET_MEAN, IMAGENET_STD, device);
        let n = x1.size()[0];
        let z = self.head.forward_t(&trunk.forward_t(&Tensor::cat(&[x1, x2], 0), true), true);
        let t = self.cfg.contrastive.temperature;
        let (loss, acc) = match crate::dist::world() {
            // the global batch: negatives from every rank, gradients flow back to each
            Some(g) => {
                let equal = g.all_reduce_f64(n as f64, ReduceOp::Min)? == g.all_reduce_f64(n as f64, ReduceOp::Max)?;
                let (h1, h2) = (l2_normalize(&z.narrow(0, 0, n)), l2_normalize(&z.narrow(0, n, n)));
                if equal {
                    let (a1, a2) = (g.all_gather_autograd(&h1)?, g.all_gather_autograd(&h2)?);
                    nt_xent_against(&h1, &h2, &a1, &a2, g.rank() as i64 * n, t)
                } else {
                    // a rank lost records this step (undecodable): its own batch only
                    nt_xent_against(&h1, &h2, &h1, &h2, 0, t)
                }
            }
            None => nt_xent(&z.narrow(0, 0, n), &z.narrow(0, n, n), t),
        };
        Ok(StepOutput { loss, accuracy: Some(acc) })
    }

    fn parameters(&self) -> &[Tensor] {
        self.head_opt.params()
    }

    fn update(&mut self, lr: f64) {
        self.head_opt.step(lr);
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.head_vs, "");
        t.extend(self.head_opt.state("optim."));
        (t, json!({ "dim": self.cfg.contrastive.dim }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, _json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "")?;
        self.head_opt.load_state("optim.", tensors).map_err(TrainError::Config)?;
        Ok(())
    }
}
