//! A whole encoder layer of the GC as one graph node, its backward pass written out by hand on
//! the kernels of the parent module. As a dozen candle nodes, the layer's backward pass
//! allocated, zeroed and added a gradient for every edge between them, and computed a gradient
//! for every dropout mask: candle's gradient bookkeeping took 12 % of a training step in the
//! profile. Here each gradient is written once, the parameters' into one packed buffer.

use std::borrow::Cow;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{
    GRAIN, Heads, Mat, f32s, gelu_bwd_rows, gelu_rows, layer_norm_bwd_rows, layer_norm_rows,
    linear_param_grads, linear_rows, matmul, simd,
};

/// An encoder layer's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct LayerShape {
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    /// Local attention: each position sees the keys within this many positions of it.
    pub window: Option<usize>,
}

/// An encoder layer's dropout factors (0 or 1/(1 − p)) in training.
pub struct LayerMasks {
    /// Per sequence, head, query and key (batch · heads · seq²).
    pub attention: Vec<f32>,
    /// Per output row and unit, on the attention's output projection.
    pub attn_out: Vec<f32>,
    /// Per output row and unit, on the feed-forward's output.
    pub ff_out: Vec<f32>,
}

/// The sizes of the packed parameters' parts, in their order, for hidden width `h` and
/// intermediate width `i`: [q; k; v] weights, [q; k; v] biases, the output projection's weight
/// and bias, the attention norm's weight and bias, the feed-forward's two weights and biases, the
/// feed-forward norm's weight and bias.
fn part_sizes(h: usize, i: usize) -> [usize; 10] {
    [3 * h * h, 3 * h, h * h, h, 2 * h, i * h, i, h * i, h, 2 * h]
}

fn parts(mut rest: &[f32], sizes: [usize; 10]) -> [&[f32]; 10] {
    sizes.map(|n| {
        let (part, tail) = rest.split_at(n);
        rest = tail;
        part
    })
}

fn parts_mut(mut rest: &mut [f32], sizes: [usize; 10]) -> [&mut [f32]; 10] {
    sizes.map(|n| {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        part
    })
}

/// What the backward pass reads of the forward pass, besides the input and the parameters.
struct Saved {
    qkv: Vec<f32>,
    /// The attention's output, before its projection.
    ctx: Vec<f32>,
    /// The residual sum before the attention block's norm, and that norm's output.
    s1: Vec<f32>,
    x1: Vec<f32>,
    /// The feed-forward's first projection, before and after GELU.
    pre: Vec<f32>,
    act: Vec<f32>,
    /// The residual sum before the feed-forward block's norm.
    s2: Vec<f32>,
}

struct EncoderLayer {
    shape: LayerShape,
    masks: Option<LayerMasks>,
    saved: OnceLock<Saved>,
}

/// The geometry of one call, checked against the layer's shape and masks.
struct Geometry {
    heads: Heads,
    batch: usize,
    sizes: [usize; 10],
}

impl Geometry {
    /// Rows of the batch: every position of every sequence.
    fn rows(&self) -> usize {
        self.batch * self.heads.s
    }
}

impl EncoderLayer {
    fn geometry(&self, op: &str, xl: &Layout, params: usize) -> Result<Geometry> {
        let &[batch, s, h] = xl.dims() else {
            bail!("{op}: the input must be (batch, seq, hidden)")
        };
        let sh = self.shape;
        let heads = Heads::new(op, s, h, sh.heads, sh.window)?;
        let sizes = part_sizes(h, sh.intermediate);
        if params != sizes.iter().sum::<usize>() {
            bail!(
                "{op}: {params} packed parameters do not fit hidden {h}, intermediate {}",
                sh.intermediate
            );
        }
        let rows = batch * s;
        if let Some(m) = &self.masks
            && (m.attention.len() != batch * sh.heads * s * s
                || m.attn_out.len() != rows * h
                || m.ff_out.len() != rows * h)
        {
            bail!("{op}: a dropout mask has the wrong size");
        }
        Ok(Geometry {
            heads,
            batch,
            sizes,
        })
    }

    fn mask(&self, pick: impl Fn(&LayerMasks) -> &Vec<f32>) -> Option<&[f32]> {
        self.masks.as_ref().map(|m| pick(m).as_slice())
    }
}

/// y ← r + m ⊙ y (dropout factors `m`, or none): a residual connection around dropout.
fn add_dropped(r: &[f32], y: &mut [f32], m: Option<&[f32]>) {
    let m = m.map(|m| m.par_chunks(GRAIN));
    let pairs = y.par_chunks_mut(GRAIN).zip(r.par_chunks(GRAIN));
    match m {
        Some(m) => pairs.zip(m).for_each(|((y, r), m)| {
            simd(
                #[inline(always)]
                || {
                    for i in 0..y.len() {
                        y[i] = r[i] + m[i] * y[i];
                    }
                },
            )
        }),
        None => pairs.for_each(|(y, r)| {
            simd(
                #[inline(always)]
                || y.iter_mut().zip(r).for_each(|(y, r)| *y += r),
            )
        }),
    }
}

/// m ⊙ g (dropout factors `m`, or none).
fn masked<'a>(g: &'a [f32], m: Option<&[f32]>) -> Cow<'a, [f32]> {
    match m {
        Some(m) => Cow::Owned(g.par_iter().zip(m).map(|(g, m)| g * m).collect()),
        None => Cow::Borrowed(g),
    }
}

impl CustomOp2 for EncoderLayer {
    fn name(&self) -> &'static str {
        "kgf-encoder-layer"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, p) = (f32s(name, xs, xl)?, f32s(name, ps, pl)?);
        let geo = self.geometry(name, xl, p.len())?;
        let (n, eps) = (geo.heads, self.shape.eps);
        let h = n.h;
        let [
            w_qkv,
            b_qkv,
            w_o,
            b_o,
            norm1,
            w_in,
            b_in,
            w_out,
            b_out,
            norm2,
        ] = parts(p, geo.sizes);
        let qkv = linear_rows(x, w_qkv, b_qkv);
        let mut ctx = vec![0f32; geo.rows() * h];
        n.forward(self.mask(|m| &m.attention), &qkv, &mut ctx);
        let mut s1 = linear_rows(&ctx, w_o, b_o);
        add_dropped(x, &mut s1, self.mask(|m| &m.attn_out));
        let mut x1 = vec![0f32; s1.len()];
        layer_norm_rows(&s1, &norm1[..h], &norm1[h..], eps, &mut x1);
        let pre = linear_rows(&x1, w_in, b_in);
        let mut act = vec![0f32; pre.len()];
        gelu_rows(&pre, &mut act);
        let mut s2 = linear_rows(&act, w_out, b_out);
        add_dropped(&x1, &mut s2, self.mask(|m| &m.ff_out));
        let mut y = vec![0f32; s2.len()];
        layer_norm_rows(&s2, &norm2[..h], &norm2[h..], eps, &mut y);
        let saved = Saved {
            qkv,
            ctx,
            s1,
            x1,
            pre,
            act,
            s2,
        };
        if self.saved.set(saved).is_err() {
            bail!("{name}: the op ran forward twice (each call makes its own)");
        }
        Ok((CpuStorage::F32(y), Shape::from((geo.batch, n.s, h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(params, &grad.contiguous()?, &EncoderLayerBwd(self))?;
        let n = x.elem_count();
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dp = packed.narrow(0, n, params.elem_count())?;
        Ok((Some(dx), Some(dp)))
    }
}

/// The gradients of [`EncoderLayer`] from (x, params, ∂y), packed flat as [∂x | ∂params].
struct EncoderLayerBwd<'a>(&'a EncoderLayer);

impl EncoderLayerBwd<'_> {
    /// Back through the layer, from the output gradient `g` to `dx` and `dp` (∂params), in the
    /// reverse order of the forward pass.
    fn run(
        &self,
        geo: &Geometry,
        x: &[f32],
        p: &[f32],
        g: &[f32],
        dx: &mut [f32],
        dp: &mut [f32],
    ) -> Result<()> {
        let layer = self.0;
        let Some(saved) = layer.saved.get() else {
            bail!("{}: backward before forward", layer.name());
        };
        let (n, eps) = (geo.heads, layer.shape.eps);
        let h = n.h;
        let [w_qkv, _, w_o, _, norm1, w_in, _, w_out, _, norm2] = parts(p, geo.sizes);
        let [
            dw_qkv,
            db_qkv,
            dw_o,
            db_o,
            dnorm1,
            dw_in,
            db_in,
            dw_out,
            db_out,
            dnorm2,
        ] = parts_mut(dp, geo.sizes);

        // The feed-forward block, y = norm(x1 + m ⊙ (gelu(x1·w_inᵀ + b_in)·w_outᵀ + b_out)).
        let mut dx1 = vec![0f32; saved.x1.len()];
        layer_norm_bwd_rows(&saved.s2, &norm2[..h], g, eps, &mut dx1, dnorm2);
        let mut dpre = {
            let df = masked(&dx1, layer.mask(|m| &m.ff_out));
            linear_param_grads(&saved.act, &df, dw_out, db_out);
            let mut dact = vec![0f32; saved.act.len()];
            matmul(
                &mut dact,
                false,
                Mat::AsStored(&df),
                Mat::AsStored(w_out),
                h,
            );
            dact
        };
        gelu_bwd_rows(&saved.pre, &mut dpre);
        linear_param_grads(&saved.x1, &dpre, dw_in, db_in);
        matmul(
            &mut dx1,
            true,
            Mat::AsStored(&dpre),
            Mat::AsStored(w_in),
            layer.shape.intermediate,
        );
        drop(dpre);

        // The attention block, x1 = norm(x + m ⊙ (attention(x·w_qkvᵀ + b_qkv)·w_oᵀ + b_o)).
        let mut ds1 = vec![0f32; saved.s1.len()];
        layer_norm_bwd_rows(&saved.s1, &norm1[..h], &dx1, eps, &mut ds1, dnorm1);
        drop(dx1);
        let dctx = {
            let d_o = masked(&ds1, layer.mask(|m| &m.attn_out));
            linear_param_grads(&saved.ctx, &d_o, dw_o, db_o);
            let mut dctx = vec![0f32; saved.ctx.len()];
            matmul(&mut dctx, false, Mat::AsStored(&d_o), Mat::AsStored(w_o), h);
            dctx
        };
        let mut dqkv = vec![0f32; saved.qkv.len()];
        n.backward(layer.mask(|m| &m.attention), &saved.qkv, &dctx, &mut dqkv);
        linear_param_grads(x, &dqkv, dw_qkv, db_qkv);
        // ∂x: the residual path, plus the path through the projections.
        dx.copy_from_slice(&ds1);
        matmul(dx, true, Mat::AsStored(&dqkv), Mat::AsStored(w_qkv), 3 * h);
        Ok(())
    }
}

impl CustomOp3 for EncoderLayerBwd<'_> {
    fn name(&self) -> &'static str {
        "kgf-encoder-layer-bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, p, g) = (
            f32s(name, xs, xl)?,
            f32s(name, ps, pl)?,
            f32s(name, gs, gl)?,
        );
        let geo = self.0.geometry(name, xl, p.len())?;
        if g.len() != geo.rows() * geo.heads.h {
            bail!("{name}: the gradient has the wrong size");
        }
        let mut out = vec![0f32; x.len() + p.len()];
        let (dx, dp) = out.split_at_mut(x.len());
        self.run(&geo, x, p, g, dx, dp)?;
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// One encoder layer over `x` (batch, seq, hidden), post-norm as BERT:
/// `x1 = norm(x + drop(attention(x)·w_oᵀ + b_o))`, `y = norm(x1 + drop(gelu(x1·w_inᵀ + b_in)·w_outᵀ + b_out))`.
/// `params` holds the layer's variables flattened and concatenated in the order of
/// [`part_sizes`]; `masks` the dropout factors in training; with `shape.window`, local attention.
pub fn encoder_layer(
    x: &Tensor,
    params: &Tensor,
    shape: LayerShape,
    masks: Option<LayerMasks>,
) -> Result<Tensor> {
    let op = EncoderLayer {
        shape,
        masks,
        saved: OnceLock::new(),
    };
    x.contiguous()?.apply_op2(&params.contiguous()?, op)
}
