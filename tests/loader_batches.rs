//! Worker pool and batches: order and bytes independent of the number of workers, shapes,
//! labels/ids, rotation labels, tensors.

mod loader_common;
use loader_common::*;
use silt::loader::{cpu_decoder_factory, preset, run_epoch, LoaderConfig, Sampler, SamplerKind};
use silt_shards::Dataset;
use std::sync::Arc;

fn small_dataset(dir: &std::path::Path, n: usize) -> Arc<Dataset> {
    // Small photos keep the test quick.
    let files: Vec<String> = photos().into_iter().filter(|p| (p.1 as u64 * p.2 as u64) < 400_000).take(n).map(|p| p.0).collect();
    write_dataset(dir, &data_dir().join("photos"), &files, 1 << 20);
    Arc::new(Dataset::open(dir).unwrap())
}

#[test]
fn batches_are_identical_whatever_the_worker_count() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = small_dataset(tmp.path(), 40);
    let pipeline = Arc::new(preset("pic-multicrop").unwrap());
    let idx = Sampler::new(SamplerKind::Shuffle, ds.len(), 3, 0, 1).unwrap().epoch_indices(0);
    let run = |workers| {
        let cfg = LoaderConfig { batch_size: 7, workers, prefetch: 1, seed: 11, drop_last: false };
        run_epoch(ds.clone(), pipeline.clone(), idx.clone(), 0, &cfg, cpu_decoder_factory(true)).collect::<Vec<_>>()
    };
    let one = run(1);
    let three = run(3);
    assert_eq!(one.len(), 6, "40 samples in batches of 7");
    assert_eq!(one, three, "same seed -> same batches, bytes and order with 1 or 3 workers");
    let order: Vec<u64> = one.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(order, idx, "samples arrive in sampler order");
    let b = &one[0];
    assert_eq!(b.views.len(), 4);
    assert_eq!((b.views[0].size, b.views[1].size), (160, 96));
    for (k, &i) in b.indices.iter().enumerate() {
        let r = ds.get(i).unwrap();
        assert_eq!(b.ids[k], r.id);
        assert_eq!(b.labels[k], r.label.unwrap());
    }
    let t = b.view_u8(1);
    assert_eq!(t.size(), vec![7, 3, 96, 96]);
    assert_eq!(t.kind(), tch::Kind::Uint8);
    let f = b.view_f32(0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], tch::Device::Cpu);
    assert_eq!(f.size(), vec![7, 3, 160, 160]);
    // Check normalisation on one value.
    let raw = b.views[0].data[5] as f64;
    let got = f.flatten(0, -1).double_value(&[5]);
    assert!((got - (raw / 255.0 - 0.485) / 0.229).abs() < 1e-4);
    if tch::Cuda::is_available() {
        assert!(t.is_pinned(tch::Device::Cuda(0)));
    } else {
        println!("SKIP pinned-memory check: no CUDA device");
    }
    // Another epoch gives other views of the same images.
    let cfg = LoaderConfig { batch_size: 7, workers: 2, prefetch: 1, seed: 11, drop_last: false };
    let e1: Vec<_> = run_epoch(ds.clone(), pipeline.clone(), idx.clone(), 1, &cfg, cpu_decoder_factory(true)).collect();
    assert_ne!(e1[0].views[0].data, one[0].views[0].data);
}

#[test]
fn rotnet_batches_carry_four_rotations_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = small_dataset(tmp.path(), 5);
    let pipeline = Arc::new(preset("rotnet").unwrap());
    let cfg = LoaderConfig { batch_size: 5, workers: 1, prefetch: 1, seed: 0, drop_last: false };
    let b = run_epoch(ds.clone(), pipeline, (0..5).collect(), 0, &cfg, cpu_decoder_factory(true)).next().unwrap();
    let v = &b.views[0];
    assert_eq!(v.n, 20);
    assert_eq!(v.rotation_labels, (0..5).flat_map(|_| 0..4).collect::<Vec<i64>>());
    let s = 224usize;
    let img = |k: usize| &v.data[k * 3 * s * s..(k + 1) * 3 * s * s];
    // 180 degrees = both axes mirrored, per channel plane.
    let (r0, r2) = (img(0), img(2));
    for c in 0..3 {
        for y in [0usize, 17, 223] {
            for x in [0usize, 100, 223] {
                assert_eq!(r2[c * s * s + y * s + x], r0[c * s * s + (s - 1 - y) * s + (s - 1 - x)]);
            }
        }
    }
    assert_eq!(b.rotation_labels_tensor(0).size(), vec![20]);
}

#[test]
fn drop_last_and_prefetch_bound_are_respected() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = small_dataset(tmp.path(), 23);
    let pipeline = Arc::new(preset("eval").unwrap());
    let cfg = LoaderConfig { batch_size: 5, workers: 2, prefetch: 1, seed: 0, drop_last: true };
    let batches: Vec<_> = run_epoch(ds.clone(), pipeline.clone(), (0..23).collect(), 0, &cfg, cpu_decoder_factory(true)).collect();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![5, 5, 5, 5]);
    // Stopping early (dropping the iterator) must not hang.
    let mut it = run_epoch(ds, pipeline, (0..23).collect(), 0, &cfg, cpu_decoder_factory(true));
    assert!(it.next().is_some());
    drop(it);
}
