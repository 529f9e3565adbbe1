//! Fused CPU kernels, with their backward passes, for the GC: linear layers (one gemm with the
//! bias), layer norm, and a whole encoder layer as one graph node ([`layer`]: multi-head
//! attention with its softmax inside, erf GELU, dropout and the residual connections); and AdamW
//! updating the variables in place. candle 0.11 runs each element-wise op on one thread and
//! allocates a tensor per primitive, its backward pass allocates, zeroes and adds a gradient per
//! graph edge, and its fused layer-norm and softmax kernels have no backward pass; these do one
//! pass per direction, on the rayon pool that candle's matmuls use (`RAYON_NUM_THREADS`).
//!
//! CPU and f32 only: `model` calls them on the CPU and composes candle primitives on other
//! devices, where candle's own kernels serve.

mod layer;

pub use layer::{LayerMasks, LayerShape, encoder_layer};

use candle_core::backprop::GradStore;
use candle_core::{
    CpuStorage, CustomOp3, DType, InplaceOp2, Layout, Result, Shape, Tensor, Var, bail,
};
use candle_nn::ParamsAdamW;
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise the hand-off, small enough to balance.
const GRAIN: usize = 1 << 14;

fn f32s<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: only f32 tensors")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: the input must be contiguous"),
    }
}

fn last_dim(op: &str, l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!("{op}: needs a non-empty last dimension"),
    }
}

/// Rows of `d` elements per rayon task.
fn chunk(d: usize) -> usize {
    d * (GRAIN / d).max(1)
}

/// Runs `f` compiled for AVX-512 or else AVX2 and FMA where the CPU has them: the release build
/// targets baseline x86-64, whose 4-lane SSE2 code runs these kernels at about half the AVX2
/// speed. Only code inlined into the feature-enabled function gets its features, and LLVM
/// declines to inline a large closure by itself: so every `f` is an `#[inline(always)]`
/// closure and every helper it calls `#[inline(always)]`.
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX-512F, checked just above; every CPU with it has AVX2 and FMA.
        return unsafe { avx512(f) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has both features, checked just above.
        return unsafe { avx2(f) };
    }
    f()
}

/// Σ f(a, b) over two slices in eight lanes, so that the loop vectorizes (one running sum is a
/// chain the compiler may not reorder).
#[inline(always)]
fn sum_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ a·b.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_of(a, b, |x, y| x * y)
}

/// Mean and 1/√(variance + eps) of a row (two passes, as the composed version).
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum_of(x, x, |v, _| v) / n;
    let var = sum_of(x, x, |v, _| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// eˣ, branch-free so that loops over it vectorize (libm's `expf` is a scalar call): with
/// x = n·ln 2 + r and |r| ≤ ln 2 / 2, e^r comes from its Taylor polynomial to r⁷ (error below
/// 1e-8) and 2ⁿ goes into the exponent bits. x is clamped to [-87, 88], where 2ⁿ stays a
/// normal number; e⁻⁸⁷ ≈ 1.6e-38 stands for anything smaller.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    const C: [f32; 8] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let p = C.iter().fold(0.0, |acc, c| acc * r + c);
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}
/// gemm's parallelism: candle's thread count, on the rayon pool candle's matmuls use.
fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    }
}

/// A row-major operand of [`matmul`], used as stored or transposed.
#[derive(Clone, Copy)]
enum Mat<'a> {
    AsStored(&'a [f32]),
    Transposed(&'a [f32]),
}

/// `dst` ← a·b, plus `dst` when `accumulate`; all row-major, with `k` the inner dimension (so
/// a is m × k and b is k × n after their transpositions, and `dst` m × n).
fn matmul(dst: &mut [f32], accumulate: bool, a: Mat, b: Mat, k: usize) {
    let ((a, a_t), (b, b_t)) = (a.parts(), b.parts());
    assert!(
        k > 0 && a.len() % k == 0 && b.len() % k == 0,
        "matmul: the inner dimension {k} does not divide the operands"
    );
    let (m, n) = (a.len() / k, b.len() / k);
    assert_eq!(dst.len(), m * n, "matmul: the destination is not {m} × {n}");
    // Column and row strides: a transposed operand is read down its stored columns.
    let (a_cs, a_rs) = if a_t { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if b_t { (k, 1) } else { (1, n) };
    // SAFETY: the checks above keep every index of the three row-major m × k, k × n and m × n
    // operands inside their slices, and `dst` is borrowed mutably, apart from both inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        );
    }
}

impl<'a> Mat<'a> {
    fn parts(self) -> (&'a [f32], bool) {
        match self {
            Mat::AsStored(v) => (v, false),
            Mat::Transposed(v) => (v, true),
        }
    }
}

/// `x·wᵀ + b` of every row of `x` (`w`: out × in, `b`: out): one gemm that starts from the bias
/// rows.
fn linear_rows(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let in_f = w.len() / b.len();
    let rows = x.len() / in_f;
    let mut y = Vec::with_capacity(rows * b.len());
    for _ in 0..rows {
        y.extend_from_slice(b);
    }
    matmul(&mut y, true, Mat::AsStored(x), Mat::Transposed(w), in_f);
    y
}

/// ∂w = gᵀ·x and ∂b = the column sums of g, for `x·wᵀ + b` with input `x` and output gradient `g`.
fn linear_param_grads(x: &[f32], g: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let rows = g.len() / db.len();
    matmul(dw, false, Mat::Transposed(g), Mat::AsStored(x), rows);
    column_sums(g, db);
}

/// `out` ← the sums of the columns of `g` (rows of `out.len()`), in row blocks on the rayon
/// pool (candle's `sum(0)` walks each column down on one thread).
fn column_sums(g: &[f32], out: &mut [f32]) {
    let n = out.len();
    let sums = g
        .par_chunks(chunk(n))
        .map(|rows| {
            simd(
                #[inline(always)]
                || {
                    let mut acc = vec![0f32; n];
                    for row in rows.chunks_exact(n) {
                        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                    }
                    acc
                },
            )
        })
        .reduce(
            || vec![0f32; n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    out.copy_from_slice(&sums);
}

/// Rows of `out` ← the rows of `x` normalised, (x − μ)/√(σ² + eps), times `w` plus `b`.
fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    out.par_chunks_mut(chunk(d))
        .zip(x.par_chunks(chunk(d)))
        .for_each(|(out, x)| {
            simd(
                #[inline(always)]
                || {
                    for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                        let (mean, rstd) = moments(x, eps);
                        for i in 0..d {
                            o[i] = (x[i] - mean) * rstd * w[i] + b[i];
                        }
                    }
                },
            )
        });
}

/// The gradients of [`layer_norm_rows`] from its input `x`, weight `w` and output gradient `g`:
/// ∂x row by row into `dx`; ∂w = Σ g·x̂ and ∂b = Σ g into `dwb` = [∂w | ∂b].
fn layer_norm_bwd_rows(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32], dwb: &mut [f32]) {
    let d = w.len();
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(chunk(d))
        .zip(x.par_chunks(chunk(d)).zip(g.par_chunks(chunk(d))))
        .map(|(dx, (x, g))| {
            simd(
                #[inline(always)]
                || {
                    let mut acc = vec![0f32; 2 * d];
                    let (mut xhat, mut gw) = (vec![0f32; d], vec![0f32; d]);
                    for ((dx, x), g) in dx
                        .chunks_exact_mut(d)
                        .zip(x.chunks_exact(d))
                        .zip(g.chunks_exact(d))
                    {
                        let (mean, rstd) = moments(x, eps);
                        for i in 0..d {
                            xhat[i] = (x[i] - mean) * rstd;
                            gw[i] = g[i] * w[i];
                            acc[i] += g[i] * xhat[i];
                            acc[d + i] += g[i];
                        }
                        let m1 = sum_of(&gw, &gw, |v, _| v) / d as f32;
                        let m2 = dot(&gw, &xhat) / d as f32;
                        for i in 0..d {
                            dx[i] = rstd * (gw[i] - m1 - xhat[i] * m2);
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    dwb.fill(0.0);
    for p in partials {
        for (s, v) in dwb.iter_mut().zip(p) {
            *s += v;
        }
    }
}

/// Layer norm over the last dimension with weight and bias: (x − μ)/√(σ² + eps)·w + b.
struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "kgf-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            f32s(name, xs, xl)?,
            f32s(name, ws, wl)?,
            f32s(name, bs, bl)?,
        );
        let d = last_dim(name, xl)?;
        if w.len() != d || b.len() != d {
            bail!("{name}: weight and bias must have the last dimension's size {d}");
        }
        let mut out = vec![0f32; x.len()];
        layer_norm_rows(x, w, b, self.eps, &mut out);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let rows = x.elem_count() / d;
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormBwd { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows, 1)?.reshape(d)?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The gradients of [`LayerNorm`] from (x, w, ∂y), packed as `(rows + 2, d)`: ∂x row by row,
/// then ∂w, then ∂b.
struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "kgf-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, g) = (
            f32s(name, xs, xl)?,
            f32s(name, ws, wl)?,
            f32s(name, gs, gl)?,
        );
        let d = w.len();
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, dwb) = out.split_at_mut(rows * d);
        layer_norm_bwd_rows(x, w, g, self.eps, dx, dwb);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// erf(x), from a rational approximation on [-4, 4] (erf is ±1 to f32 precision outside):
/// x·P(x²)/Q(x²), the form XLA and Eigen use for f32. Branch-free, so the GELU loops vectorize;
/// within 5e-7 of libm's `erff`, which took 7 % of a training step as a scalar call.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0, |acc, c| acc * x2 + c);
    let q = Q.iter().fold(0.0, |acc, c| acc * x2 + c);
    x * p / q
}

/// `out` ← x·Φ(x) with the exact (erf) normal CDF, as PyTorch's default GELU.
fn gelu_rows(x: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(GRAIN)
        .zip(x.par_chunks(GRAIN))
        .for_each(|(out, x)| {
            simd(
                #[inline(always)]
                || {
                    for (o, &x) in out.iter_mut().zip(x) {
                        *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
                    }
                },
            )
        });
}

/// `g` ← ∂x of [`gelu_rows`] from x and ∂y = `g`: ∂y·(Φ(x) + x·φ(x)).
fn gelu_bwd_rows(x: &[f32], g: &mut [f32]) {
    g.par_chunks_mut(GRAIN)
        .zip(x.par_chunks(GRAIN))
        .for_each(|(g, x)| {
            simd(
                #[inline(always)]
                || {
                    for (g, &x) in g.iter_mut().zip(x) {
                        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                        let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
                        *g *= cdf + x * pdf;
                    }
                },
            )
        });
}

/// `x·wᵀ + b` over the last dimension (`w`: (out, in), `b`: (out)): one gemm that starts from the
/// bias rows. candle-nn's `Linear` is a transpose, a matmul and a broadcast add, three graph
/// nodes whose backward passes each allocate, zero and add a gradient of the output's size.
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "kgf-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            f32s(name, xs, xl)?,
            f32s(name, ws, wl)?,
            f32s(name, bs, bl)?,
        );
        let &[out_f, in_f] = wl.dims() else {
            bail!("{name}: the weight must be (out, in)")
        };
        if last_dim(name, xl)? != in_f || b.len() != out_f {
            bail!(
                "{name}: input {:?} does not fit weight {:?}",
                xl.dims(),
                wl.dims()
            );
        }
        let mut dims = xl.dims().to_vec();
        *dims.last_mut().expect("checked non-empty") = out_f;
        Ok((CpuStorage::F32(linear_rows(x, w, b)), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out_f, in_f) = w.dims2()?;
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearBwd)?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, n, out_f * in_f)?.reshape((out_f, in_f))?;
        let db = packed.narrow(0, n + out_f * in_f, out_f)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The gradients of [`Linear`] from (x, w, ∂y), packed flat as [∂x | ∂w | ∂b].
struct LinearBwd;

impl CustomOp3 for LinearBwd {
    fn name(&self) -> &'static str {
        "kgf-linear-bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, g) = (
            f32s(name, xs, xl)?,
            f32s(name, ws, wl)?,
            f32s(name, gs, gl)?,
        );
        let &[out_f, _] = wl.dims() else {
            bail!("{name}: the weight must be (out, in)")
        };
        let mut out = vec![0f32; x.len() + w.len() + out_f];
        let (dx, rest) = out.split_at_mut(x.len());
        let (dw, db) = rest.split_at_mut(w.len());
        matmul(dx, false, Mat::AsStored(g), Mat::AsStored(w), out_f);
        linear_param_grads(x, g, dw, db);
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// y += α·x.
#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Multi-head self-attention over packed projections, for a batch of sequences: the shape, and
/// the kernels of one sequence. `qkv` holds a sequence's `s` rows of [q | k | v], and its
/// result is the heads' outputs merged, `mask ⊙ softmax(q·kᵀ/√d) · v` per head, with `mask` the
/// dropout factors of the sequence per head, query and key (or none). With a `window`, query i
/// sees only the keys within `window` positions of it (local attention: the read-level GC gives
/// every position of a read the view a sentence has, in one pass), and the work outside the
/// band is skipped. Composed of candle primitives this is a dozen graph nodes (head split copies,
/// two batched matmuls, the scaling, softmax, dropout, the merge copy), each with gradient
/// buffers of its own.
#[derive(Clone, Copy)]
struct Heads {
    s: usize,
    h: usize,
    heads: usize,
    d: usize,
    scale: f32,
    window: usize,
}

impl Heads {
    fn new(op: &str, s: usize, h: usize, heads: usize, window: Option<usize>) -> Result<Self> {
        if heads == 0 || !h.is_multiple_of(heads) {
            bail!("{op}: hidden width {h} does not split into {heads} heads");
        }
        let d = h / heads;
        Ok(Self {
            s,
            h,
            heads,
            d,
            scale: 1.0 / (d as f32).sqrt(),
            window: window.unwrap_or(s),
        })
    }

    /// The keys query `i` sees: `[lo, hi)`.
    #[inline(always)]
    fn band(&self, i: usize) -> (usize, usize) {
        (
            i.saturating_sub(self.window),
            (i + self.window + 1).min(self.s),
        )
    }

    /// Query `i`'s (c = 0), key's (1) or value's (2) vector of head `hd`, in one sequence's
    /// block of `qkv`.
    #[inline(always)]
    fn row<'a>(&self, qkv: &'a [f32], c: usize, hd: usize, i: usize) -> &'a [f32] {
        let at = i * 3 * self.h + c * self.h + hd * self.d;
        &qkv[at..at + self.d]
    }

    /// The dropout factors of head `hd` in a sequence's `mask` (s × s).
    #[inline(always)]
    fn mask_of<'a>(&self, mask: Option<&'a [f32]>, hd: usize) -> Option<&'a [f32]> {
        let n = self.s * self.s;
        mask.map(|m| &m[hd * n..][..n])
    }

    /// softmax(q·kᵀ·scale) of head `hd` of one sequence into `p` (s × s; zero outside the band).
    #[inline(always)]
    fn probs(&self, qkv: &[f32], hd: usize, p: &mut [f32]) {
        let s = self.s;
        for (i, row) in p.chunks_exact_mut(s).enumerate() {
            let q = self.row(qkv, 0, hd, i);
            let (lo, hi) = self.band(i);
            let mut max = f32::NEG_INFINITY;
            for (j, v) in row.iter_mut().enumerate().take(hi).skip(lo) {
                *v = dot(q, self.row(qkv, 1, hd, j)) * self.scale;
                max = max.max(*v);
            }
            let mut sum = 0f32;
            for v in &mut row[lo..hi] {
                *v = exp(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            row[lo..hi].iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// One sequence: `qkv` its (s, 3h) block, `out` its (s, h) block of the result.
    #[inline(always)]
    fn forward_one(&self, mask: Option<&[f32]>, qkv: &[f32], out: &mut [f32]) {
        let (s, d, h) = (self.s, self.d, self.h);
        let mut p = vec![0f32; s * s];
        out.fill(0.0);
        for hd in 0..self.heads {
            self.probs(qkv, hd, &mut p);
            if let Some(m) = self.mask_of(mask, hd) {
                p.iter_mut().zip(m).for_each(|(p, m)| *p *= m);
            }
            for i in 0..self.s {
                let o = &mut out[i * h + hd * d..][..d];
                let (lo, hi) = self.band(i);
                for j in lo..hi {
                    axpy(p[i * s + j], self.row(qkv, 2, hd, j), o);
                }
            }
        }
    }

    /// ∂qkv of one sequence from its `qkv` block and its block `g` of ∂out, into `out` (s, 3h);
    /// the probabilities are recomputed (s² dot products per head, cheaper than keeping them).
    #[inline(always)]
    fn backward_one(&self, mask: Option<&[f32]>, qkv: &[f32], g: &[f32], out: &mut [f32]) {
        let (s, d, h) = (self.s, self.d, self.h);
        let (mut p, mut dp) = (vec![0f32; s * s], vec![0f32; s * s]);
        let mut grads = vec![0f32; 3 * s * d];
        for hd in 0..self.heads {
            self.probs(qkv, hd, &mut p);
            let m = self.mask_of(mask, hd);
            grads.fill(0.0);
            let (dq, rest) = grads.split_at_mut(s * d);
            let (dk, dv) = rest.split_at_mut(s * d);
            // Through the dropped-out probabilities: ∂v and ∂p.
            for i in 0..self.s {
                let go = &g[i * h + hd * d..][..d];
                let (lo, hi) = self.band(i);
                for j in lo..hi {
                    let keep = m.map_or(1.0, |m| m[i * s + j]);
                    axpy(p[i * s + j] * keep, go, &mut dv[j * d..][..d]);
                    dp[i * s + j] = dot(go, self.row(qkv, 2, hd, j)) * keep;
                }
            }
            // Through the softmax and the scaling: ∂scores, then ∂q and ∂k.
            for i in 0..self.s {
                let (lo, hi) = self.band(i);
                let (p, dp) = (&p[i * s + lo..i * s + hi], &mut dp[i * s + lo..i * s + hi]);
                let sum = dot(p, dp);
                for j in 0..hi - lo {
                    dp[j] = p[j] * (dp[j] - sum) * self.scale;
                }
                for j in 0..hi - lo {
                    axpy(dp[j], self.row(qkv, 1, hd, lo + j), &mut dq[i * d..][..d]);
                    axpy(dp[j], self.row(qkv, 0, hd, i), &mut dk[(lo + j) * d..][..d]);
                }
            }
            for i in 0..s {
                for (c, src) in [&*dq, &*dk, &*dv].into_iter().enumerate() {
                    out[i * 3 * h + c * h + hd * d..][..d].copy_from_slice(&src[i * d..][..d]);
                }
            }
        }
    }

    /// A sequence's block of the dropout factors (heads · s² per sequence).
    fn sequence_mask<'a>(&self, mask: Option<&'a [f32]>, seq: usize) -> Option<&'a [f32]> {
        let n = self.heads * self.s * self.s;
        mask.map(|m| &m[seq * n..][..n])
    }

    /// The attention of every sequence of `qkv` into `out`, one rayon task per sequence.
    fn forward(&self, mask: Option<&[f32]>, qkv: &[f32], out: &mut [f32]) {
        out.par_chunks_mut(self.s * self.h)
            .zip(qkv.par_chunks(self.s * 3 * self.h))
            .enumerate()
            .for_each(|(seq, (out, qkv))| {
                let mask = self.sequence_mask(mask, seq);
                simd(
                    #[inline(always)]
                    || self.forward_one(mask, qkv, out),
                )
            });
    }

    /// ∂qkv of every sequence from `qkv` and ∂out = `g`, into `out`.
    fn backward(&self, mask: Option<&[f32]>, qkv: &[f32], g: &[f32], out: &mut [f32]) {
        out.par_chunks_mut(self.s * 3 * self.h)
            .zip(
                qkv.par_chunks(self.s * 3 * self.h)
                    .zip(g.par_chunks(self.s * self.h)),
            )
            .enumerate()
            .for_each(|(seq, (out, (qkv, g)))| {
                let mask = self.sequence_mask(mask, seq);
                simd(
                    #[inline(always)]
                    || self.backward_one(mask, qkv, g, out),
                )
            });
    }
}

/// Layer norm over the last dimension (`x`'s last dimension = `w`'s = `b`'s size).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op3(w, b, LayerNorm { eps })
}

/// `x·wᵀ + b` over the last dimension, as candle-nn's `Linear` (`w`: (out, in), `b`: (out)).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(w, b, Linear)
}

fn f32s_mut<'a>(op: &str, s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: only f32 tensors")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{op}: the tensor must be contiguous"),
    }
}

/// m ← β₁m + (1−β₁)·s·g, v ← β₂v + (1−β₂)·(s·g)², on the moments packed as `[m, v]`.
struct Moments {
    beta1: f32,
    beta2: f32,
    grad_scale: f32,
}

impl InplaceOp2 for Moments {
    fn name(&self) -> &'static str {
        "kgf-adamw-moments"
    }

    fn cpu_fwd(
        &self,
        mv: &mut CpuStorage,
        ml: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let (mv, g) = (f32s_mut(self.name(), mv, ml)?, f32s(self.name(), gs, gl)?);
        if mv.len() != 2 * g.len() {
            bail!("{}: moments and gradient sizes differ", self.name());
        }
        let (m, v) = mv.split_at_mut(g.len());
        let (b1, b2, s) = (self.beta1, self.beta2, self.grad_scale);
        m.par_chunks_mut(GRAIN)
            .zip(v.par_chunks_mut(GRAIN).zip(g.par_chunks(GRAIN)))
            .for_each(|(m, (v, g))| {
                simd(
                    #[inline(always)]
                    || {
                        for i in 0..g.len() {
                            let g = g[i] * s;
                            m[i] = b1 * m[i] + (1.0 - b1) * g;
                            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                        }
                    },
                )
            });
        Ok(())
    }
}

/// θ ← θ·(1 − lr·λ) − lr·m̂/(√v̂ + ε), from the packed moments.
struct Update {
    lr: f32,
    decay: f32,
    scale_m: f32,
    scale_v: f32,
    eps: f32,
}

impl InplaceOp2 for Update {
    fn name(&self) -> &'static str {
        "kgf-adamw-update"
    }

    fn cpu_fwd(
        &self,
        ts: &mut CpuStorage,
        tl: &Layout,
        mvs: &CpuStorage,
        mvl: &Layout,
    ) -> Result<()> {
        let (theta, mv) = (f32s_mut(self.name(), ts, tl)?, f32s(self.name(), mvs, mvl)?);
        if mv.len() != 2 * theta.len() {
            bail!("{}: moments and variable sizes differ", self.name());
        }
        let (m, v) = mv.split_at(theta.len());
        theta
            .par_chunks_mut(GRAIN)
            .zip(m.par_chunks(GRAIN).zip(v.par_chunks(GRAIN)))
            .for_each(|(t, (m, v))| {
                simd(
                    #[inline(always)]
                    || {
                        for i in 0..t.len() {
                            let step =
                                (m[i] * self.scale_m) / ((v[i] * self.scale_v).sqrt() + self.eps);
                            t[i] = t[i] * self.decay - self.lr * step;
                        }
                    },
                )
            });
        Ok(())
    }
}

/// AdamW with candle-nn's arithmetic (decoupled weight decay, bias-corrected moments) for CPU
/// f32 variables: two fused in-place passes per variable instead of a dozen allocating ones,
/// with the gradient-clipping factor folded into the first.
pub struct AdamW {
    state: Vec<(Var, Tensor)>,
    params: ParamsAdamW,
    step: i32,
}

impl AdamW {
    /// `None` unless every variable is a CPU f32 tensor.
    pub fn new(vars: &[Var], params: ParamsAdamW) -> Result<Option<Self>> {
        if !vars
            .iter()
            .all(|v| v.device().is_cpu() && v.dtype() == DType::F32)
        {
            return Ok(None);
        }
        let state = vars
            .iter()
            .map(|v| {
                Ok((
                    v.clone(),
                    Tensor::zeros(2 * v.elem_count(), DType::F32, v.device())?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Some(Self {
            state,
            params,
            step: 0,
        }))
    }

    /// One step with every gradient multiplied by `grad_scale` first.
    pub fn step(&mut self, grads: &GradStore, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let p = &self.params;
        let moments = Moments {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            grad_scale: grad_scale as f32,
        };
        let update = Update {
            lr: p.lr as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.step))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.step))) as f32,
            eps: p.eps as f32,
        };
        for (var, mv) in &self.state {
            if let Some(g) = grads.get(var) {
                mv.inplace_op2(&g.contiguous()?, &moments)?;
                var.as_tensor().inplace_op2(mv, &update)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Var {
        let mut rng = crate::rng::Rng::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * 1.5) as f32).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Runs `f` fused and `g` composed on the same inputs and a random upstream gradient;
    /// compares outputs and every input's gradient.
    fn same_as_composed(
        inputs: &[Var],
        fused: impl Fn(&[&Tensor]) -> Result<Tensor>,
        composed: impl Fn(&[&Tensor]) -> Result<Tensor>,
    ) {
        let ts: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
        let (yf, yc) = (fused(&ts).unwrap(), composed(&ts).unwrap());
        assert!(
            max_diff(&yf, &yc) < 1e-5,
            "forward differs by {}",
            max_diff(&yf, &yc)
        );
        let up = randn(yf.dims(), 99);
        let gf = (&yf * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gc = (&yc * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (i, v) in inputs.iter().enumerate() {
            let (a, b) = (gf.get(v).unwrap(), gc.get(v).unwrap());
            let tol = 1e-4
                * (1.0
                    + b.abs()
                        .unwrap()
                        .max_keepdim(0)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .max(0)
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap());
            assert!(
                max_diff(a, b) < tol,
                "gradient of input {i} differs by {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn fused_layer_norm_matches_composed_forward_and_backward() {
        let inputs = [randn(&[3, 5, 32], 1), randn(&[32], 2), randn(&[32], 3)];
        same_as_composed(
            &inputs,
            |t| layer_norm(t[0], t[1], t[2], 1e-12),
            |t| {
                let mean = t[0].mean_keepdim(D::Minus1)?;
                let xc = t[0].broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                xc.broadcast_div(&(var + 1e-12)?.sqrt()?)?
                    .broadcast_mul(t[1])?
                    .broadcast_add(t[2])
            },
        );
    }

    #[test]
    fn fused_linear_matches_candle_linear_forward_and_backward() {
        use candle_core::Module;
        let inputs = [randn(&[3, 5, 8], 11), randn(&[6, 8], 12), randn(&[6], 13)];
        same_as_composed(
            &inputs,
            |t| linear(t[0], t[1], t[2]),
            |t| candle_nn::Linear::new(t[1].clone(), Some(t[2].clone())).forward(t[0]),
        );
    }

    #[test]
    fn the_fast_erf_is_within_1e_6_of_libm_everywhere() {
        let mut worst = 0f32;
        for i in -100_000..=100_000 {
            let x = i as f32 / 10_000.0;
            worst = worst.max((erf(x) - candle_core::cpu::erf::erf_f32(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf - erff| = {worst}");
        assert!((erf(-30.0) + 1.0).abs() < 1e-6 && (erf(30.0) - 1.0).abs() < 1e-6);
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn the_fast_exp_is_within_3e_7_of_libm_relative() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            worst = worst.max((exp(x) - x.exp()).abs() / x.exp());
        }
        assert!(worst < 3e-7, "max relative |exp - expf| = {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 2e-38 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn fused_gelu_matches_candles_forward_and_backward() {
        let x = randn(&[40_000], 5);
        let xs = x.as_tensor().to_vec1::<f32>().unwrap();
        let mut y = vec![0f32; xs.len()];
        gelu_rows(&xs, &mut y);
        let want = x.as_tensor().gelu_erf().unwrap();
        assert!(max_diff(&Tensor::new(y, &Device::Cpu).unwrap(), &want) < 1e-5);
        let up = randn(&[40_000], 99);
        let mut g = up.as_tensor().to_vec1::<f32>().unwrap();
        gelu_bwd_rows(&xs, &mut g);
        let grads = (&want * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = Tensor::new(g, &Device::Cpu).unwrap();
        assert!(max_diff(&g, grads.get(&x).unwrap()) < 1e-5);
    }

    #[test]
    fn fused_adamw_matches_candle_adamw() {
        use candle_nn::Optimizer;
        let params = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        };
        // A plain tensor, so that each Var below copies it (a Var's tensor would be shared).
        let values = randn(&[50_000], 7).as_tensor().to_vec1::<f32>().unwrap();
        let init = Tensor::from_vec(values, 50_000, &Device::Cpu).unwrap();
        let (a, b) = (
            Var::from_tensor(&init).unwrap(),
            Var::from_tensor(&init).unwrap(),
        );
        let mut ours = AdamW::new(std::slice::from_ref(&a), params.clone())
            .unwrap()
            .unwrap();
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], params).unwrap();
        for step in 0..3 {
            let target = randn(&[50_000], 10 + step).as_tensor().clone();
            let loss = |v: &Var| {
                (v.as_tensor() - &target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            ours.step(&loss(&a).backward().unwrap(), 0.5).unwrap();
            let mut g = loss(&b).backward().unwrap();
            let scaled = (g.get(&b).unwrap() * 0.5).unwrap();
            g.insert(&b, scaled);
            theirs.step(&g).unwrap();
        }
        assert!(max_diff(a.as_tensor(), b.as_tensor()) < 1e-5);
        assert!(max_diff(a.as_tensor(), &init) > 1e-3, "the variable moved");
    }

    #[test]
    fn fused_ops_take_strided_inputs() {
        use candle_core::Module;
        let (x, w, b) = (randn(&[6, 8], 6), randn(&[8, 6], 7), randn(&[8], 8));
        let t = x.as_tensor().t().unwrap();
        let got = linear(&t, w.as_tensor(), b.as_tensor()).unwrap();
        let want = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
            .forward(&t)
            .unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
    }
}
