//! RotNet (methods.md §2.3): every image is shown in its four rotations (0/90/180/270°, the same
//! crop, all in one batch) and a 4-way classifier on the trunk's features learns which.

use super::{cross_entropy, train_view, EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Pipeline, SamplerKind, ViewSpec};
use crate::model::heads::{linear_head, HeadInit};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::Result;
use crate::train::optim::Sgd;
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, nn::Module, Device, Tensor};

pub struct RotNet {
    cfg: TrainConfig,
    head_vs: nn::VarStore,
    head: nn::Linear,
    head_opt: Sgd,
}

impl RotNet {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Self {
        tch::manual_seed(seed_of(&[cfg.seed, 0x40]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let head = linear_head(&(head_vs.root() / "rotation"), feature_dim, 4, HeadInit::TorchDefault);
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        RotNet { cfg: cfg.clone(), head_vs, head, head_opt }
    }
}

impl Method for RotNet {
    fn name(&self) -> &'static str {
        "rotnet"
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline { name: "rotnet".into(), views: vec![ViewSpec { rotations: true, ..train_view(&self.cfg) }], mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        Ok(super::instance_sampler(ctx))
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let x = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let targets = batch.rotation_labels_tensor(0).to_device(device);
        let logits = self.head.forward(&trunk.forward_t(&x, true).relu());
        let (loss, acc) = cross_entropy(&logits, &targets);
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
        (t, json!({}))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, _json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "")?;
        self.head_opt.load_state("optim.", tensors).map_err(crate::train::error::TrainError::Config)?;
        Ok(())
    }
}
