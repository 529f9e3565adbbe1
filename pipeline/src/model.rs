//! The two models of design §4, built on candle: the gene classifier (a BERT-style encoder over a
//! read's k-mer tokens with local attention, so that every position sees the k-mers of a
//! sentence around it, and a linear head that names a gene at every position: a read's 126
//! sentences in one pass) and the fusion classifier (an MLP over a few gene-agnostic features
//! of the frozen GC's per-position gene probabilities: how much better the read is explained by
//! one gene up to a breakpoint and another after it than by one gene throughout). Also the device
//! choice, seeded weight initialisation and seeded dropout.
//!
//! Owns forward passes only; losses, optimisation and early stopping live in `train`.

use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Embedding, Init, Linear, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::fused;
use crate::rng::Rng;

pub type Result<T> = candle_core::Result<T>;

/// Where the model steps compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when built with the `cuda` feature and a GPU is present, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Makes glibc keep freed memory for reuse instead of returning each large block to the kernel:
/// a training step frees and allocates hundreds of activation tensors of megabytes, and with
/// glibc's defaults every one is a fresh mmap whose pages fault in zeroed (a quarter of the CPU
/// time of a GC step in the profile).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only changes allocator thresholds; called once, before the model exists.
    ONCE.call_once(|| unsafe {
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Opens the device; on CUDA also seeds the device RNG that dropout uses there.
pub fn open_device(choice: DeviceChoice, seed: u64) -> Result<Device> {
    select_device(choice, seed).map(|(dev, _)| dev)
}

/// Opens the device and says which one and why, in a line for the step's log ("CUDA device
/// 0", or "the CPU (…why…)"). `Auto` falls back to the CPU when this binary has no CUDA, when
/// the NVIDIA driver library cannot be loaded (a node without a GPU, or a pod the NVIDIA
/// runtime did not inject the driver into) or when no device opens; `Cuda` fails then, with
/// the cause and the fix.
pub fn select_device(choice: DeviceChoice, seed: u64) -> Result<(Device, String)> {
    let (dev, why) = match choice {
        DeviceChoice::Cpu => (Device::Cpu, "the CPU (--device cpu)".to_string()),
        DeviceChoice::Cuda => match cuda_unavailable() {
            Some(why) => candle_core::bail!(
                "--device cuda: {why}; run on a node with an NVIDIA GPU and driver, or pass --device auto or cpu"
            ),
            None => (Device::new_cuda(0)?, "CUDA device 0".to_string()),
        },
        DeviceChoice::Auto => match cuda_unavailable() {
            Some(why) => (Device::Cpu, format!("the CPU ({why})")),
            None => match Device::new_cuda(0) {
                Ok(dev) => (dev, "CUDA device 0".to_string()),
                Err(e) => (
                    Device::Cpu,
                    format!("the CPU (CUDA device 0 did not open: {e})"),
                ),
            },
        },
    };
    if dev.is_cuda() {
        dev.set_seed(seed)?;
    } else {
        keep_freed_memory();
    }
    Ok((dev, why))
}

/// Why CUDA cannot be used by this process, if it cannot.
#[cfg(not(feature = "cuda"))]
fn cuda_unavailable() -> Option<String> {
    Some("this kgf-step is built without the `cuda` feature".into())
}

/// Why CUDA cannot be used by this process, if it cannot. The CUDA build loads the driver at
/// run time (pipeline/check-cuda-build), so its absence is found here rather than by the
/// dynamic linker.
#[cfg(feature = "cuda")]
fn cuda_unavailable() -> Option<String> {
    // SAFETY: loading the NVIDIA driver library runs only its initialisers, as cudarc's own
    // loader does a moment later.
    match unsafe { libloading::Library::new("libcuda.so.1") } {
        Ok(_) => None,
        Err(e) => Some(format!("no NVIDIA driver: libcuda.so.1 did not load ({e})")),
    }
}

/// Dropout with probability `p` when `rng` is given (training), identity otherwise. On the CPU
/// the mask comes from our seeded stream (candle's CPU RNG cannot be seeded); on CUDA it comes
/// from the device RNG seeded in [`open_device`], to avoid a host→device copy per call.
fn dropout(x: &Tensor, p: f64, rng: Option<&mut Rng>) -> Result<Tensor> {
    let Some(rng) = rng else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if !x.device().is_cpu() {
        return candle_nn::ops::dropout(x, p as f32);
    }
    let mask = dropout_factors(x.elem_count(), p, rng);
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// `n` dropout factors from our seeded stream: 0 with probability `p`, else 1/(1 − p).
fn dropout_factors(n: usize, p: f64, rng: &mut Rng) -> Vec<f32> {
    let keep = 1.0 / (1.0 - p) as f32;
    // Two 32-bit draws per call of the generator: the mask is most of a step's random numbers.
    let threshold = (p * 4_294_967_296.0) as u64;
    let mut mask = Vec::with_capacity(n + 1);
    while mask.len() < n {
        let r = rng.next_u64();
        for half in [r & 0xffff_ffff, r >> 32] {
            mask.push(if half < threshold { 0.0 } else { keep });
        }
    }
    mask.truncate(n);
    mask
}

/// A linear layer: the fused kernel of [`fused`] on the CPU (one gemm with the bias, one graph
/// node), candle-nn's own elsewhere.
fn dense(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    match layer.bias() {
        Some(bias) if x.device().is_cpu() => fused::linear(x, layer.weight(), bias),
        _ => layer.forward(x),
    }
}

/// How a variable is initialised, decided from its name.
enum InitRule {
    Zeros,
    Ones,
    Normal(f64),
    Uniform(f64),
}

/// Overwrites every variable of `varmap` from our seeded stream, in name order, so that a seed
/// gives the same initial model everywhere (candle's own initialisers use an unseeded CPU RNG).
fn init_vars(varmap: &VarMap, seed: u64, rule: impl Fn(&str, &[usize]) -> InitRule) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::derive(seed, "init", 0);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let values: Vec<f32> = match rule(name, &dims) {
            InitRule::Zeros => vec![0.0; n],
            InitRule::Ones => vec![1.0; n],
            InitRule::Normal(std) => (0..n).map(|_| (rng.normal() * std) as f32).collect(),
            InitRule::Uniform(b) => (0..n)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * b) as f32)
                .collect(),
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), var.device())?)?;
    }
    Ok(())
}

/// BERT's layer-norm epsilon.
const NORM_EPS: f64 = 1e-12;

/// Layer normalisation over the last dimension: the fused kernel of [`fused`] on the CPU, else
/// differentiable primitives (candle-nn's fused layer-norm kernel has no backward pass).
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(size: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            return fused::layer_norm(x, &self.weight, &self.bias, NORM_EPS as f32);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + NORM_EPS)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// The gene classifier's shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GcConfig {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    /// k-mers per read: the positions classified in one pass.
    pub positions: usize,
    /// Local attention: in every layer a position sees the k-mers within this many positions.
    pub window: usize,
    pub classes: usize,
    pub dropout: f64,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: Norm,
}

impl Layer {
    /// The layer's variables flattened into one vector, in [`fused::encoder_layer`]'s order.
    fn packed(&self) -> Result<Tensor> {
        let flat = |t: &Tensor| t.flatten_all();
        let bias = |l: &Linear| match l.bias() {
            Some(b) => Ok(b.clone()),
            None => candle_core::bail!("the GC's linear layers have biases"),
        };
        let parts = [
            flat(self.q.weight())?,
            flat(self.k.weight())?,
            flat(self.v.weight())?,
            bias(&self.q)?,
            bias(&self.k)?,
            bias(&self.v)?,
            flat(self.o.weight())?,
            bias(&self.o)?,
            self.attn_norm.weight.clone(),
            self.attn_norm.bias.clone(),
            flat(self.ff_in.weight())?,
            bias(&self.ff_in)?,
            flat(self.ff_out.weight())?,
            bias(&self.ff_out)?,
            self.ff_norm.weight.clone(),
            self.ff_norm.bias.clone(),
        ];
        Tensor::cat(&parts, 0)
    }

    /// The layer over `x` (batch, seq, hidden), with dropout `p` when `rng` is given; with a
    /// `window`, each position attends only to the positions within it. On the CPU the whole
    /// layer is one fused graph node; elsewhere it is composed of candle primitives.
    fn forward(
        &self,
        x: &Tensor,
        heads: usize,
        p: f64,
        rng: Option<&mut Rng>,
        window: Option<usize>,
    ) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return self.composed(x, heads, p, rng, window);
        }
        let (b, s, h) = x.dims3()?;
        // Drawn in the composed version's order: attention, output projection, feed-forward.
        let masks = match rng {
            Some(rng) if p > 0.0 => Some(fused::LayerMasks {
                attention: dropout_factors(b * heads * s * s, p, rng),
                attn_out: dropout_factors(b * s * h, p, rng),
                ff_out: dropout_factors(b * s * h, p, rng),
            }),
            _ => None,
        };
        let shape = fused::LayerShape {
            heads,
            intermediate: self.ff_in.weight().dim(0)?,
            eps: NORM_EPS as f32,
            window,
        };
        fused::encoder_layer(x, &self.packed()?, shape, masks)
    }

    /// [`Layer::forward`] composed of candle primitives, for devices other than the CPU.
    fn composed(
        &self,
        x: &Tensor,
        heads: usize,
        p: f64,
        mut rng: Option<&mut Rng>,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let (b, seq, h) = x.dims3()?;
        let d = h / heads;
        let split = |t: Tensor| t.reshape((b, seq, heads, d))?.transpose(1, 2)?.contiguous();
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let mut scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?;
        if let Some(w) = window {
            // Keys outside the band get a score that softmax turns into 0.
            let band: Vec<f32> = (0..seq * seq)
                .map(|ij| {
                    if (ij / seq).abs_diff(ij % seq) <= w {
                        0.0
                    } else {
                        -1e9
                    }
                })
                .collect();
            scores = scores.broadcast_add(&Tensor::from_vec(band, (seq, seq), x.device())?)?;
        }
        let att = dropout(
            &candle_nn::ops::softmax(&scores, D::Minus1)?,
            p,
            rng.as_deref_mut(),
        )?;
        let ctx = att.matmul(&v)?.transpose(1, 2)?.reshape((b, seq, h))?;
        let attn_out = dropout(&self.o.forward(&ctx)?, p, rng.as_deref_mut())?;
        let x = self.attn_norm.forward(&(x + attn_out)?)?;
        let ff = self.ff_out.forward(&self.ff_in.forward(&x)?.gelu_erf()?)?;
        let ff = dropout(&ff, p, rng)?;
        self.ff_norm.forward(&(x + ff)?)
    }
}

/// The read-level gene classifier: k-mer embeddings (no absolute positions: a base is the same
/// evidence wherever in a read it lies), norm, dropout, encoder layers with local attention, and
/// a linear head at every position.
pub struct GeneClassifier {
    pub cfg: GcConfig,
    word: Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    head: Linear,
}

impl GeneClassifier {
    pub fn new(cfg: &GcConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden;
        let lin = |i, o, name: &str, vb: &VarBuilder| candle_nn::linear(i, o, vb.pp(name));
        let layers = (0..cfg.layers)
            .map(|l| {
                let vb = vb.pp(format!("layer{l}"));
                Ok(Layer {
                    q: lin(h, h, "q", &vb)?,
                    k: lin(h, h, "k", &vb)?,
                    v: lin(h, h, "v", &vb)?,
                    o: lin(h, h, "o", &vb)?,
                    attn_norm: Norm::new(h, vb.pp("attn_norm"))?,
                    ff_in: lin(h, cfg.intermediate, "ff_in", &vb)?,
                    ff_out: lin(cfg.intermediate, h, "ff_out", &vb)?,
                    ff_norm: Norm::new(h, vb.pp("ff_norm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            word: candle_nn::embedding(cfg.vocab_size, h, vb.pp("word"))?,
            emb_norm: Norm::new(h, vb.pp("emb_norm"))?,
            layers,
            head: lin(h, cfg.classes, "head", &vb)?,
        })
    }

    /// A fresh model with BERT's initialisation (normal, std 0.02; norms 1; biases 0).
    pub fn init(cfg: &GcConfig, device: &Device, seed: u64) -> Result<(Self, VarMap)> {
        let varmap = VarMap::new();
        let model = Self::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_vars(&varmap, seed, |name, _| {
            if name.ends_with("bias") {
                InitRule::Zeros
            } else if name.ends_with("norm.weight") {
                InitRule::Ones
            } else {
                InitRule::Normal(0.02)
            }
        })?;
        Ok((model, varmap))
    }

    /// Logits `(batch, positions, classes)` for the k-mer ids `(batch, positions)` (u32) of
    /// whole reads. Dropout only when `rng` is given.
    pub fn forward(&self, ids: &Tensor, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let p = self.cfg.dropout;
        let x = self.word.forward(ids)?;
        let mut x = dropout(&self.emb_norm.forward(&x)?, p, rng.as_deref_mut())?;
        for layer in &self.layers {
            x = layer.forward(
                &x,
                self.cfg.heads,
                p,
                rng.as_deref_mut(),
                Some(self.cfg.window),
            )?;
        }
        dense(&self.head, &x)
    }
}

/// The fusion classifier's shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FcConfig {
    /// Features per read (`crate::fc::features_len`).
    pub input: usize,
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

/// MLP over a read's breakpoint features; one logit, the score of label 1 (not chimeric).
pub struct FusionClassifier {
    pub cfg: FcConfig,
    layers: Vec<Linear>,
    out: Linear,
}

impl FusionClassifier {
    pub fn new(cfg: &FcConfig, vb: VarBuilder) -> Result<Self> {
        let mut width = cfg.input;
        let mut layers = Vec::new();
        for (i, &h) in cfg.hidden.iter().enumerate() {
            layers.push(candle_nn::linear(width, h, vb.pp(format!("fc{i}")))?);
            width = h;
        }
        Ok(Self {
            cfg: cfg.clone(),
            layers,
            out: candle_nn::linear(width, 1, vb.pp("out"))?,
        })
    }

    /// A fresh model with PyTorch's default linear initialisation (uniform ±1/√fan_in).
    pub fn init(cfg: &FcConfig, device: &Device, seed: u64) -> Result<(Self, VarMap)> {
        let varmap = VarMap::new();
        let model = Self::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_vars(&varmap, seed, |name, dims| {
            if name.ends_with("bias") {
                InitRule::Zeros
            } else {
                InitRule::Uniform(1.0 / (dims[1] as f64).sqrt())
            }
        })?;
        Ok((model, varmap))
    }

    /// Logits `(batch,)` for features `(batch, input)`.
    pub fn forward(&self, x: &Tensor, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = dropout(&dense(l, &x)?.relu()?, self.cfg.dropout, rng.as_deref_mut())?;
        }
        dense(&self.out, &x)?.squeeze(1)
    }
}

/// All trainable variables of a var map, in name order (a stable order for the optimiser).
pub fn sorted_vars(varmap: &VarMap) -> Vec<Var> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(&String, &Var)> = data.iter().collect();
    named.sort_by_key(|(n, _)| n.as_str());
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> GcConfig {
        GcConfig {
            vocab_size: 130,
            hidden: 8,
            layers: 1,
            heads: 2,
            intermediate: 16,
            positions: 6,
            window: 2,
            classes: 3,
            dropout: 0.1,
        }
    }

    #[test]
    fn gc_shapes_seeded_init_and_dropout_only_in_training() {
        let dev = Device::Cpu;
        let (m1, v1) = GeneClassifier::init(&tiny(), &dev, 3).unwrap();
        let (_, v2) = GeneClassifier::init(&tiny(), &dev, 3).unwrap();
        let a = sorted_vars(&v1)[0]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = sorted_vars(&v2)[0]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "same seed, same weights");
        let ids =
            Tensor::from_vec(vec![5u32, 6, 7, 8, 9, 10, 11, 9, 9, 9, 9, 12], (2, 6), &dev).unwrap();
        let eval1 = m1.forward(&ids, None).unwrap();
        assert_eq!(eval1.dims(), &[2, 6, 3], "a gene at every position");
        let eval2 = m1.forward(&ids, None).unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&eval1, &eval2), 0.0);
        let mut rng = Rng::new(1);
        let train = m1.forward(&ids, Some(&mut rng)).unwrap();
        assert!(
            diff(&eval1, &train) > 0.0,
            "dropout changes training outputs"
        );
    }

    /// With a window, a position's output does not depend on the tokens outside it.
    #[test]
    fn local_attention_keeps_a_position_blind_to_tokens_outside_its_window() {
        let dev = Device::Cpu;
        let cfg = GcConfig {
            window: 1,
            ..tiny()
        };
        let (m, _) = GeneClassifier::init(&cfg, &dev, 4).unwrap();
        let ids = |last: u32| Tensor::from_vec(vec![5u32, 6, 7, 8, 9, last], (1, 6), &dev).unwrap();
        let (a, b) = (
            m.forward(&ids(10), None).unwrap(),
            m.forward(&ids(90), None).unwrap(),
        );
        // One layer, window 1: positions 0-3 cannot see position 5; position 4 and 5 can.
        let row = |t: &Tensor, i: usize| t.narrow(1, i, 1).unwrap();
        for i in 0..4 {
            assert_close(&row(&a, i), &row(&b, i), 1e-6, &format!("position {i}"));
        }
        let moved = (row(&a, 4) - row(&b, 4))
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(moved > 0.0, "position 4 sees position 5");
    }

    /// A tensor of normal values from our seeded stream (candle's CPU `randn` is unseeded).
    fn seeded_normal(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Each value of `a` within `tol`·(1 + max |b|) of `b`'s.
    fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        let scale = 1.0 + b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() <= tol * scale, "{what}: {a:?} vs {b:?}");
        }
    }

    /// The CPU's fused layer gives the composed layer's outputs, and the same gradients for its
    /// input and every variable: without dropout and with it (the same masks from the same seed),
    /// with full and with local attention.
    #[test]
    fn the_fused_layer_matches_the_composed_one_forward_and_backward() {
        let dev = Device::Cpu;
        let cfg = GcConfig {
            dropout: 0.3,
            ..tiny()
        };
        let (m, vars) = GeneClassifier::init(&cfg, &dev, 5).unwrap();
        // Not BERT's zero biases and unit norms, so that each is used and its gradient shows.
        for (i, var) in sorted_vars(&vars).iter().enumerate() {
            var.set(&(seeded_normal(var.dims(), 100 + i as u64) * 0.5).unwrap())
                .unwrap();
        }
        let layer = &m.layers[0];
        let x = Var::from_tensor(&seeded_normal(&[3, cfg.positions, cfg.hidden], 1)).unwrap();
        for (training, window) in [
            (false, None),
            (true, None),
            (false, Some(1)),
            (true, Some(2)),
        ] {
            let what = format!("training {training}, window {window:?}");
            let (mut r1, mut r2) = (Rng::new(11), Rng::new(11));
            let (heads, p) = (cfg.heads, cfg.dropout);
            let fused = layer
                .forward(x.as_tensor(), heads, p, training.then_some(&mut r1), window)
                .unwrap();
            let composed = layer
                .composed(x.as_tensor(), heads, p, training.then_some(&mut r2), window)
                .unwrap();
            assert_close(&fused, &composed, 1e-5, &format!("outputs, {what}"));
            let up = seeded_normal(fused.dims(), 2);
            let grads = |out: &Tensor| out.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
            let (gf, gc) = (grads(&fused), grads(&composed));
            let mut compared = 0;
            for (i, var) in sorted_vars(&vars).iter().chain([&x]).enumerate() {
                match (gf.get(var), gc.get(var)) {
                    (Some(a), Some(b)) => {
                        assert_close(a, b, 1e-4, &format!("gradient of variable {i}, {what}"));
                        compared += 1;
                    }
                    (None, None) => {}
                    _ => panic!("variable {i} has a gradient on one side only, {what}"),
                }
            }
            assert_eq!(
                compared, 17,
                "the layer's 16 variables and its input, {what}"
            );
        }
    }

    #[test]
    fn fc_maps_features_to_one_logit() {
        let cfg = FcConfig {
            input: 6,
            hidden: vec![4],
            dropout: 0.0,
        };
        let (m, _) = FusionClassifier::init(&cfg, &Device::Cpu, 1).unwrap();
        let x = Tensor::ones((5, 6), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x, None).unwrap().dims(), &[5]);
    }
}
