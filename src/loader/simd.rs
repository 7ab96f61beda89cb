//! Run-time choice of a wider-vector build for the augmentation kernels.
//!
//! The colour and blur loops are written so that LLVM vectorises them; the default x86-64 target
//! only allows SSE2 (4 floats). [`simd_kernel!`] compiles a kernel three times — for the
//! baseline, with AVX2 (8 floats) and with AVX-512 (16 floats) — and runs the widest build this
//! CPU has. Every build gives the same bytes: only the vector width differs (Rust never contracts
//! `a * b + c` into an FMA on its own); the tests in `augment.rs` compare them byte for byte.
//! `SILT_SIMD=baseline|avx2|avx512` caps the build (for A/B measurements).

use std::sync::OnceLock;

/// The instruction sets a kernel build may use, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Baseline, Level::Avx2, Level::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The widest build this CPU can run.
pub fn cpu_level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            return Level::Avx512;
        }
        if has!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// The build the kernels run: the CPU's widest, capped by `SILT_SIMD` when set.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("SILT_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        cpu_level().min(cap)
    })
}

/// `simd_kernel!(pub fn name / name_at (args) { body })` defines `name_at(level, args)`, which
/// runs the body's build for `level` (or the widest the CPU has, if that is narrower), and
/// `name(args)`, which runs the build [`level()`] chose.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident / $at:ident ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $vis fn $at(level: $crate::loader::simd::Level, $($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            {
                use $crate::loader::simd::{cpu_level, Level};
                match level.min(cpu_level()) {
                    // SAFETY: cpu_level() checked that this CPU has these instructions.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            body($($arg),*)
        }

        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            $at($crate::loader::simd::level(), $($arg),*)
        }
    };
}
pub(crate) use simd_kernel;
