#!/usr/bin/env python3
"""Side-by-side k-means timing: `silt cluster` (faiss backend and tch backend) against faiss
from Python (faiss-cpu wheel), on the same .npy data, same k, niter, seed and max points per
centroid; plus hierarchical vs flat on the same points. Prints a table and ratios
(silt time / python-faiss time; < 1 means silt is faster).

    source ~/.cache/silt/env && cargo build --release --bin silt
    $SILT_PYTHON benches/cluster_vs_faiss.py                        # 100k x 256 -> 1,000
    $SILT_PYTHON benches/cluster_vs_faiss.py --case 1000000x128x10000 --levels 100,100

Timings include the final assignment of every point (both sides), not data loading or PCA
(`report.json` of `silt cluster` separates them). Data: a seeded Gaussian mixture.
"""
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np


def make_data(n, d, centres=None, seed=0):
    """A Gaussian mixture: `centres` components (default n // 500, at least 100), unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((centres or max(100, n // 500), d)).astype(np.float32) * 3
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def faiss_python(x, k, niter, seed, mpc):
    import faiss
    t = time.perf_counter()
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=mpc, verbose=False)
    km.train(x)
    _, labels = km.index.search(x, 1)
    return time.perf_counter() - t, labels[:, 0]


def size_cv(labels):
    """Coefficient of variation of the non-empty clusters' sizes (0 = all equal)."""
    sizes = np.bincount(np.asarray(labels).ravel())
    sizes = sizes[sizes > 0]
    return float(sizes.std() / sizes.mean())


def silt(binary, path, out, args):
    cmd = [binary, "cluster", "--features", path, "--pca", "0", "--out", out] + args
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.load(open(os.path.join(out, "report.json")))
    return report["timings"]["kmeans_s"], np.load(os.path.join(out, "labels.npy"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", help="NxDxK (repeatable; default 100000x256x1000)")
    p.add_argument("--niter", type=int, default=20)
    p.add_argument("--centres", type=int, help="mixture components of the data (default n // 500: fewer than k, so "
                   "k-means splits components arbitrarily and two seeds disagree; = k gives one cluster per component)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-points-per-centroid", type=int, default=256)
    p.add_argument("--levels", default="", help="also run hierarchical k-means with these levels, e.g. 100,100")
    p.add_argument("--device", default="cpu", help="device for silt's tch backend (cpu|cuda|auto)")
    p.add_argument("--balanced", action="store_true", help="with --levels: also run size-balanced hierarchical k-means")
    p.add_argument("--refine", type=int, action="append", default=[],
                   help="with --levels: also run hierarchical k-means + this many global Lloyd iterations (repeatable)")
    p.add_argument("--no-torch", action="store_true", help="skip silt's tch backend (saves one flat run)")
    p.add_argument("--second-seed", type=int, help="also run faiss from Python with this seed: how well flat "
                   "k-means agrees with itself (the reference for NMI(flat, hierarchical))")
    p.add_argument("--silt", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "silt"))
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    from sklearn.metrics import normalized_mutual_info_score as nmi

    rows = []
    for case in a.case or ["100000x256x1000"]:
        n, d, k = (int(v) for v in case.split("x"))
        x = make_data(n, d, a.centres)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.npy")
            np.save(path, x)
            common = ["--k", str(k), "--niter", str(a.niter), "--seed", str(a.seed),
                      "--max-points-per-centroid", str(a.max_points_per_centroid)]
            t_py, l_py = faiss_python(x, k, a.niter, a.seed, a.max_points_per_centroid)
            t_sf, l_sf = silt(a.silt, path, os.path.join(tmp, "sf"), common + ["--backend", "faiss"])
            if a.no_torch:
                t_st, l_st = float("nan"), l_sf
            else:
                t_st, l_st = silt(a.silt, path, os.path.join(tmp, "st"), common + ["--backend", "torch", "--device", a.device])
            row = dict(case=case, threads=os.cpu_count(), faiss_python_s=t_py, silt_faiss_s=t_sf, silt_torch_s=t_st,
                       ratio_silt_faiss=t_sf / t_py, ratio_silt_torch=t_st / t_py,
                       nmi_silt_faiss_vs_python=nmi(l_py, l_sf), nmi_silt_torch_vs_python=nmi(l_py, l_st))
            if a.levels:
                t_h, l_h = silt(a.silt, path, os.path.join(tmp, "h"),
                                common + ["--backend", "faiss", "--levels", a.levels])
                row.update(hier_s=t_h, speedup_flat_over_hier=t_sf / t_h, nmi_flat_vs_hier=nmi(l_sf, l_h),
                           size_cv_flat=size_cv(l_sf), size_cv_hier=size_cv(l_h))
                if a.balanced:
                    t_b, l_b = silt(a.silt, path, os.path.join(tmp, "b"),
                                    common + ["--backend", "faiss", "--levels", a.levels, "--balanced"])
                    row.update(balanced_s=t_b, nmi_flat_vs_balanced=nmi(l_sf, l_b), size_cv_balanced=size_cv(l_b))
                for it in a.refine:
                    t_r, l_r = silt(a.silt, path, os.path.join(tmp, f"r{it}"),
                                    common + ["--backend", "faiss", "--levels", a.levels, "--refine", str(it)])
                    row.setdefault("refined", []).append(dict(iters=it, seconds=t_r, speedup_flat_over_refined=t_sf / t_r,
                                                             nmi_flat_vs_refined=nmi(l_sf, l_r), size_cv=size_cv(l_r)))
            if a.second_seed is not None:
                _, l_py2 = faiss_python(x, k, a.niter, a.second_seed, a.max_points_per_centroid)
                row.update(nmi_flat_two_seeds=nmi(l_py, l_py2))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\ncase                 python-faiss   silt-faiss (ratio)   silt-tch (ratio)   NMI vs python (faiss/tch)")
    for r in rows:
        print(f"{r['case']:<20} {r['faiss_python_s']:>10.2f} s {r['silt_faiss_s']:>9.2f} s ({r['ratio_silt_faiss']:.2f}x)"
              f" {r['silt_torch_s']:>9.2f} s ({r['ratio_silt_torch']:.2f}x)   "
              f"{r['nmi_silt_faiss_vs_python']:.3f}/{r['nmi_silt_torch_vs_python']:.3f}")
        if "hier_s" in r:
            print(f"  hierarchical {a.levels}: {r['hier_s']:.2f} s, flat/hier {r['speedup_flat_over_hier']:.1f}x, "
                  f"NMI(flat, hier) {r['nmi_flat_vs_hier']:.3f}; cluster-size cv flat {r['size_cv_flat']:.3f}, hier {r['size_cv_hier']:.3f}")
        for f in r.get("refined", []):
            print(f"  hierarchical {a.levels} + {f['iters']} global iterations: {f['seconds']:.2f} s, flat/this "
                  f"{f['speedup_flat_over_refined']:.1f}x, NMI(flat, this) {f['nmi_flat_vs_refined']:.3f}, cluster-size cv {f['size_cv']:.3f}")
        if "balanced_s" in r:
            print(f"  balanced {a.levels}: {r['balanced_s']:.2f} s, NMI(flat, balanced) {r['nmi_flat_vs_balanced']:.3f}, "
                  f"cluster-size cv {r['size_cv_balanced']:.3f}")
        if "nmi_flat_two_seeds" in r:
            print(f"  flat vs flat with seed {a.second_seed}: NMI {r['nmi_flat_two_seeds']:.3f}")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
