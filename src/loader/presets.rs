//! Named augmentation recipes, one per method (see shared/reference/methods.md §1.10).

use super::augment::ColorJitter;
use super::multicrop::{Geometry, Pipeline, ViewSpec};

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// SwAV's multicropdataset.py uses 0.228 for red (a typo kept for reproduction).
pub const SWAV_STD: [f32; 3] = [0.228, 0.224, 0.225];

pub const PRESETS: &[&str] = &["deepcluster", "rotnet", "moco-v1", "moco-v2", "simclr", "pic", "pic-multicrop", "swav-multicrop", "eval"];

const BLUR: Option<(f64, (f64, f64))> = Some((0.5, (0.1, 2.0)));

fn strong(mut v: ViewSpec) -> ViewSpec {
    v.jitter = Some((ColorJitter { brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.2 }, 0.8));
    v.gray = 0.2;
    v.blur = BLUR;
    v
}

fn pipeline(name: &str, views: Vec<ViewSpec>, std: [f32; 3]) -> Pipeline {
    Pipeline { name: name.to_string(), views, mean: IMAGENET_MEAN, std }
}

/// The preset called `name`, or None.
pub fn preset(name: &str) -> Option<Pipeline> {
    Some(match name {
        // DC/DRC train: RRC(224) + flip.
        "deepcluster" => pipeline(name, vec![ViewSpec::rrc(1, 224, (0.08, 1.0))], IMAGENET_STD),
        // RotNet: RRC(224) + flip, then all four rotations of the same crop.
        "rotnet" => pipeline(name, vec![ViewSpec { rotations: true, ..ViewSpec::rrc(1, 224, (0.08, 1.0)) }], IMAGENET_STD),
        // InstDisc / MoCo v1: RRC(224, .2-1), RandomGrayscale(.2), ColorJitter(.4,.4,.4,.4), flip.
        "moco-v1" => pipeline(
            name,
            vec![ViewSpec {
                jitter: Some((ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.4 }, 1.0)),
                gray: 0.2,
                gray_first: true,
                ..ViewSpec::rrc(2, 224, (0.2, 1.0))
            }],
            IMAGENET_STD,
        ),
        // MoCo v2 aug+: RRC(.2-1), Apply(CJ(.4,.4,.4,.1), .8), Gray(.2), Apply(Blur, .5), flip.
        "moco-v2" => pipeline(
            name,
            vec![ViewSpec {
                jitter: Some((ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }, 0.8)),
                gray: 0.2,
                blur: BLUR,
                ..ViewSpec::rrc(2, 224, (0.2, 1.0))
            }],
            IMAGENET_STD,
        ),
        // SimCLR: two views, crop .08-1, flip, jitter s=1 (p .8), gray .2, blur .5; no mean/std.
        "simclr" => Pipeline { name: name.into(), views: vec![strong(ViewSpec::rrc(2, 224, (0.08, 1.0)))], mean: [0.0; 3], std: [1.0; 3] },
        // PIC: one view per iteration with SimCLR's colour ops.
        "pic" => pipeline(name, vec![strong(ViewSpec::rrc(1, 224, (0.08, 1.0)))], IMAGENET_STD),
        // PIC multi-crop: 1x160 (.14-1) + 3x96 (.08-.14).
        "pic-multicrop" => pipeline(name, vec![strong(ViewSpec::rrc(1, 160, (0.14, 1.0))), strong(ViewSpec::rrc(3, 96, (0.08, 0.14)))], IMAGENET_STD),
        // SwAV / DeepCluster-v2: 2x224 (.14-1) + 6x96 (.05-.14).
        "swav-multicrop" => pipeline(name, vec![strong(ViewSpec::rrc(2, 224, (0.14, 1.0))), strong(ViewSpec::rrc(6, 96, (0.05, 0.14)))], SWAV_STD),
        // Feature extraction / evaluation: Resize(256) + CenterCrop(224).
        "eval" => pipeline(
            name,
            vec![ViewSpec { geometry: Geometry::ResizeCenter { resize: 256 }, flip: 0.0, ..ViewSpec::rrc(1, 224, (1.0, 1.0)) }],
            IMAGENET_STD,
        ),
        _ => return None,
    })
}
