//! Fused CPU kernels, with their backward passes, for the GC's element-wise work: layer norm,
//! softmax over the last dimension and erf GELU; and AdamW updating the variables in place.
//! candle 0.11 runs each element-wise op on one thread and allocates a tensor per primitive, and
//! its fused layer-norm and softmax kernels have no backward pass; these do one pass per
//! direction, on the rayon pool that candle's matmuls use (`RAYON_NUM_THREADS`).
//!
//! CPU and f32 only: `model` calls them on the CPU and composes candle primitives on other
//! devices, where candle's own kernels serve.

use candle_core::backprop::GradStore;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, InplaceOp2, Layout, Result, Shape, Tensor,
    Var, bail,
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

/// Mean and 1/√(variance + eps) of a row (two passes, as the composed version).
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
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
        out.par_chunks_mut(chunk(d))
            .zip(x.par_chunks(chunk(d)))
            .for_each(|(out, x)| {
                for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let (mean, rstd) = moments(x, self.eps);
                    for i in 0..d {
                        o[i] = (x[i] - mean) * rstd * w[i] + b[i];
                    }
                }
            });
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
/// then ∂w = Σ ∂y·x̂, then ∂b = Σ ∂y.
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
        let (dx, sums) = out.split_at_mut(rows * d);
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk(d))
            .zip(x.par_chunks(chunk(d)).zip(g.par_chunks(chunk(d))))
            .map(|(dx, (x, g))| {
                let mut acc = vec![0f32; 2 * d];
                let mut xhat = vec![0f32; d];
                for ((dx, x), g) in dx
                    .chunks_exact_mut(d)
                    .zip(x.chunks_exact(d))
                    .zip(g.chunks_exact(d))
                {
                    let (mean, rstd) = moments(x, self.eps);
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for i in 0..d {
                        xhat[i] = (x[i] - mean) * rstd;
                        let gw = g[i] * w[i];
                        m1 += gw;
                        m2 += gw * xhat[i];
                        acc[i] += g[i] * xhat[i];
                        acc[d + i] += g[i];
                    }
                    let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                    for i in 0..d {
                        dx[i] = rstd * (g[i] * w[i] - m1 - xhat[i] * m2);
                    }
                }
                acc
            })
            .collect();
        for p in partials {
            for (s, v) in sums.iter_mut().zip(p) {
                *s += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

/// Softmax over the last dimension.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "kgf-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(self.name(), s, l)?;
        let d = last_dim(self.name(), l)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(chunk(d))
            .zip(x.par_chunks(chunk(d)))
            .for_each(|(out, x)| {
                for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut sum = 0f32;
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = (x - max).exp();
                        sum += *o;
                    }
                    let inv = 1.0 / sum;
                    o.iter_mut().for_each(|o| *o *= inv);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBwd)?,
        ))
    }
}

/// ∂x = y·(∂y − Σ ∂y·y) per row, from (y, ∂y).
struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "kgf-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, g) = (f32s(self.name(), ys, yl)?, f32s(self.name(), gs, gl)?);
        let d = last_dim(self.name(), yl)?;
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(chunk(d))
            .zip(y.par_chunks(chunk(d)).zip(g.par_chunks(chunk(d))))
            .for_each(|(out, (y, g))| {
                for ((o, y), g) in out
                    .chunks_exact_mut(d)
                    .zip(y.chunks_exact(d))
                    .zip(g.chunks_exact(d))
                {
                    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                    for i in 0..d {
                        o[i] = y[i] * (g[i] - dot);
                    }
                }
            });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// erf(x), from a rational approximation on [-4, 4] (erf is ±1 to f32 precision outside):
/// x·P(x²)/Q(x²), the form XLA and Eigen use for f32. Branch-free, so the GELU loops vectorize;
/// within 5e-7 of libm's `erff`, which took 7 % of a training step as a scalar call.
#[inline]
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

/// x·Φ(x) with the exact (erf) normal CDF, as PyTorch's default GELU.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "kgf-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(self.name(), s, l)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(GRAIN)
            .zip(x.par_chunks(GRAIN))
            .for_each(|(out, x)| {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwd)?))
    }
}

/// ∂x = ∂y·(Φ(x) + x·φ(x)), from (x, ∂y).
struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "kgf-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32s(self.name(), xs, xl)?, f32s(self.name(), gs, gl)?);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(GRAIN)
            .zip(x.par_chunks(GRAIN).zip(g.par_chunks(GRAIN)))
            .for_each(|(out, (x, g))| {
                for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
                    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
                    *o = g * (cdf + x * pdf);
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// Layer norm over the last dimension (`x`'s last dimension = `w`'s = `b`'s size).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op3(w, b, LayerNorm { eps })
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// GELU with the exact normal CDF.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
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
                for i in 0..g.len() {
                    let g = g[i] * s;
                    m[i] = b1 * m[i] + (1.0 - b1) * g;
                    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                }
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
                for i in 0..t.len() {
                    let step = (m[i] * self.scale_m) / ((v[i] * self.scale_v).sqrt() + self.eps);
                    t[i] = t[i] * self.decay - self.lr * step;
                }
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
    fn fused_softmax_matches_composed_forward_and_backward() {
        let inputs = [randn(&[4, 3, 7, 22], 4)];
        same_as_composed(
            &inputs,
            |t| softmax_last_dim(t[0]),
            |t| candle_nn::ops::softmax(t[0], D::Minus1),
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
    fn fused_gelu_matches_composed_forward_and_backward() {
        let inputs = [randn(&[40_000], 5)];
        same_as_composed(&inputs, |t| gelu_erf(t[0]), |t| t[0].gelu_erf());
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
        let x = randn(&[6, 8], 6);
        let t = x.as_tensor().t().unwrap();
        let got = softmax_last_dim(&t).unwrap();
        let want = candle_nn::ops::softmax(&t, D::Minus1).unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }
}
