//! Minimum-cost assignment on a rectangular cost matrix (rows <= columns), by the shortest
//! augmenting path method of Jonker and Volgenant in its O(rows² · cols) potential form.
//! Used for clustering accuracy, where the matrix is small (clusters × classes).

/// Returns, for every row, the column assigned to it; every row gets a distinct column.
/// `cost` is row-major `rows × cols`. Panics never; requires `rows <= cols`
/// (callers transpose when they have more rows).
pub fn min_cost_assignment(cost: &[i64], rows: usize, cols: usize) -> Vec<usize> {
    debug_assert!(rows <= cols && cost.len() == rows * cols);
    const INF: i64 = i64::MAX / 4;
    // 1-based potentials as in the classic formulation; column 0 is a virtual start column.
    let mut u = vec![0i64; rows + 1];
    let mut v = vec![0i64; cols + 1];
    let mut owner = vec![0usize; cols + 1]; // owner[j] = row matched to column j (1-based, 0 = free)
    let mut way = vec![0usize; cols + 1];
    for i in 1..=rows {
        owner[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![INF; cols + 1];
        let mut used = vec![false; cols + 1];
        loop {
            used[j0] = true;
            let i0 = owner[j0];
            let mut delta = INF;
            let mut j1 = 0usize;
            for j in 1..=cols {
                if used[j] {
                    continue;
                }
                let cur = cost[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path back to the start.
        loop {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![0usize; rows];
    for j in 1..=cols {
        if owner[j] != 0 {
            assignment[owner[j] - 1] = j - 1;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over all injective maps for small matrices.
    fn brute(cost: &[i64], rows: usize, cols: usize) -> i64 {
        fn go(r: usize, rows: usize, cols: usize, cost: &[i64], used: &mut Vec<bool>) -> i64 {
            if r == rows {
                return 0;
            }
            let mut best = i64::MAX;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r * cols + c] + go(r + 1, rows, cols, cost, used));
                    used[c] = false;
                }
            }
            best
        }
        go(0, rows, cols, cost, &mut vec![false; cols])
    }

    #[test]
    fn matches_brute_force_on_pseudo_random_matrices() {
        let mut rng = crate::cluster::rng::SplitMix64::new(7);
        for trial in 0..200 {
            let rows = 1 + trial % 5;
            let cols = rows + (trial / 5) % 3;
            let cost: Vec<i64> = (0..rows * cols).map(|_| rng.below(50) as i64 - 10).collect();
            let a = min_cost_assignment(&cost, rows, cols);
            let mut seen = vec![false; cols];
            for &c in &a {
                assert!(!seen[c], "column used twice");
                seen[c] = true;
            }
            let total: i64 = a.iter().enumerate().map(|(r, &c)| cost[r * cols + c]).sum();
            assert_eq!(total, brute(&cost, rows, cols), "rows {rows} cols {cols}");
        }
    }
}
