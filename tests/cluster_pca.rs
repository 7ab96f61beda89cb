//! PCA-whitening + L2 against scikit-learn's PCA (whiten=True, float64) on real MNIST pixels.

mod cluster_common;

use cluster_common::{mnist, python_json};
use silt::cluster::npy::{self, NpyFile};
use silt::cluster::pca::{Pca, PcaConfig};

const ORACLE: &str = r#"
import json, sys
import numpy as np
from sklearn.decomposition import PCA
a = json.load(sys.stdin)
x = np.load(a["x"]).astype(np.float64)
p = PCA(n_components=a["dim"], whiten=True, svd_solver="full").fit(x)
y = p.transform(x)
y /= np.linalg.norm(y, axis=1, keepdims=True)
np.save(a["out"], y.astype(np.float32))
n = x.shape[0]
# sklearn's variances divide by n - 1; silt's by n.
print(json.dumps(dict(eigenvalues=(p.explained_variance_ * (n - 1) / n).tolist())))
"#;

#[test]
fn pca_whitening_matches_sklearn_on_mnist() {
    let (n, d, dim) = (3000usize, 784usize, 40usize);
    let (x, _) = mnist(n);
    let dir = tempfile::tempdir().unwrap();
    let xp = dir.path().join("x.npy");
    let yp = dir.path().join("y.npy");
    npy::write(&xp, &[n, d], &x).unwrap();
    let want = python_json(ORACLE, &serde_json::json!({"x": xp, "out": yp, "dim": dim}));

    let cfg = PcaConfig { dim, ..PcaConfig::default() };
    let pca = Pca::fit(&x, d, &cfg).unwrap();
    let eig: Vec<f64> = Vec::try_from(&pca.eigenvalues).unwrap();
    for (i, (a, b)) in eig.iter().zip(want["eigenvalues"].as_array().unwrap()).enumerate() {
        let b = b.as_f64().unwrap();
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-3), "eigenvalue {i}: silt {a} sklearn {b}");
    }

    let ours = pca.transform(&x).unwrap();
    let theirs = NpyFile::open(&yp).unwrap().to_f32().unwrap();
    // Eigenvector signs are arbitrary: align each column's sign, then compare.
    let mut max_diff = 0f32;
    for j in 0..dim {
        let dot: f64 = (0..n).map(|i| ours[i * dim + j] as f64 * theirs[i * dim + j] as f64).sum();
        let s = if dot < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            max_diff = max_diff.max((ours[i * dim + j] - s * theirs[i * dim + j]).abs());
        }
    }
    println!("PCA-{dim} whitened + L2 on MNIST {n}x{d}: max |silt - sklearn| = {max_diff:e}");
    assert!(max_diff < 1e-4, "max diff {max_diff}");
    // Rows are unit length.
    for row in ours.chunks(dim).take(100) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

#[test]
fn pca_save_load_roundtrip_and_sampled_fit() {
    let (n, d) = (1500usize, 784usize);
    let (x, _) = mnist(n);
    let cfg = PcaConfig { dim: 16, max_fit_rows: 1000, seed: 3, ..PcaConfig::default() };
    let pca = Pca::fit(&x, d, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pca.safetensors");
    pca.save(&p).unwrap();
    let back = Pca::load(&p).unwrap();
    assert_eq!(pca.transform(&x).unwrap(), back.transform(&x).unwrap());
    // A sample of 1000 rows gives nearly the same leading eigenvalue as the full 1500.
    let full = Pca::fit(&x, d, &PcaConfig { dim: 16, ..PcaConfig::default() }).unwrap();
    let (a, b) = (pca.eigenvalues.double_value(&[0]), full.eigenvalues.double_value(&[0]));
    assert!((a - b).abs() / b < 0.1, "{a} vs {b}");
    // A file that is not a PCA is a clear error naming it.
    std::fs::write(dir.path().join("bad.safetensors"), b"garbage").unwrap();
    let e = Pca::load(&dir.path().join("bad.safetensors")).unwrap_err().to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
}
