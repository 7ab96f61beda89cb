//! Learning-rate schedules, evaluated at a fractional epoch so that per-iteration schedules
//! (PIC, SimCLR) and per-epoch ones (RotNet's table) share one interface.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The base rate throughout (DeepCluster, DeeperCluster).
    Constant,
    /// Multiply by `gamma` at each milestone epoch (MoCo: 0.1 at 120 and 160).
    Step { milestones: Vec<f64>, gamma: f64 },
    /// Cosine from the base rate to `final_lr` over `epochs` (MoCo v2, SimCLR, PIC).
    Cosine { epochs: f64, final_lr: f64 },
    /// RotNet's look-up table: the rate of the first (max_epoch, lr) with max_epoch > epoch.
    Table(Vec<(f64, f64)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub base: f64,
    pub schedule: Schedule,
    /// Linear warm-up from `base · warmup_start` over this many epochs (0 = none).
    pub warmup_epochs: f64,
    pub warmup_start: f64,
}

impl LrSchedule {
    pub fn constant(base: f64) -> Self {
        LrSchedule { base, schedule: Schedule::Constant, warmup_epochs: 0.0, warmup_start: 0.01 }
    }

    /// The rate at fractional epoch `t` (epoch + fraction of it done).
    pub fn at(&self, t: f64) -> f64 {
        let after = match &self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step { milestones, gamma } => self.base * gamma.powi(milestones.iter().filter(|&&m| t >= m).count() as i32),
            Schedule::Cosine { epochs, final_lr } => {
                let span = (epochs - self.warmup_epochs).max(1e-12);
                let p = ((t - self.warmup_epochs) / span).clamp(0.0, 1.0);
                final_lr + (self.base - final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Schedule::Table(rows) => rows.iter().find(|(max_epoch, _)| *max_epoch > t.floor()).or(rows.last()).map_or(self.base, |r| r.1),
        };
        if t < self.warmup_epochs {
            let start = self.base * self.warmup_start;
            start + (after - start) * (t / self.warmup_epochs)
        } else {
            after
        }
    }

    /// RotNet ImageNet's table (methods.md §2.3), scaled so the first row is `base`.
    pub fn rotnet_table(base: f64) -> Self {
        let rows = [(15.0, 1.0), (30.0, 0.1), (45.0, 0.01), (50.0, 0.001)].iter().map(|&(e, f)| (e, base * f)).collect();
        LrSchedule { base, schedule: Schedule::Table(rows), warmup_epochs: 0.0, warmup_start: 0.01 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_rotnet() {
        let s = LrSchedule::rotnet_table(0.01);
        assert_eq!(s.at(0.0), 0.01);
        assert_eq!(s.at(14.9), 0.01);
        assert!((s.at(15.0) - 0.001).abs() < 1e-12);
        assert!((s.at(49.0) - 1e-5).abs() < 1e-15);
        assert!((s.at(80.0) - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn cosine_with_warmup() {
        let s = LrSchedule { base: 1.0, schedule: Schedule::Cosine { epochs: 10.0, final_lr: 0.0 }, warmup_epochs: 2.0, warmup_start: 0.0 };
        assert_eq!(s.at(0.0), 0.0);
        assert!((s.at(1.0) - 0.5).abs() < 1e-12);
        assert!((s.at(2.0) - 1.0).abs() < 1e-12);
        assert!((s.at(6.0) - 0.5).abs() < 1e-12);
        assert!(s.at(10.0).abs() < 1e-12);
    }

    #[test]
    fn step_decay() {
        let s = LrSchedule { base: 0.03, schedule: Schedule::Step { milestones: vec![120.0, 160.0], gamma: 0.1 }, warmup_epochs: 0.0, warmup_start: 0.0 };
        assert_eq!(s.at(119.0), 0.03);
        assert!((s.at(120.0) - 0.003).abs() < 1e-12);
        assert!((s.at(199.0) - 0.0003).abs() < 1e-12);
    }
}
