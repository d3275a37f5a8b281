//! The BERT encoder of all-MiniLM-L6-v2, written out so its GELU can be one that vectorises
//! and its linear layers keep their weights the way the matrix kernel reads them.
//!
//! It is candle-transformers' `BertModel` (what this crate ran before; the tests compare the
//! two, cosine above 0.99999) with three differences: the feed-forward GELU computes erf as a
//! rational polynomial over a whole slice ([`gelu_erf`]) instead of calling libm's `erff` for
//! each value; attention's softmax is candle's fused last-dimension one; and the linear layers
//! are [`Dense`], whose transposed weights, in blocks of 32 columns, gemm reads in place instead
//! of copying the whole weight into panels at every product. On one thread a pass, libm's erf
//! was 14% of a batch's time; with this one, batches of 32 run 1.29 times as many prompts a
//! second and a single prompt takes 11% less (docs/performance.md, "A GELU that vectorises").
//! The copy was 46% of a single prompt's pass; without it a prompt alone takes 6.5–7.6 ms
//! instead of 11.5–12.3 (docs/performance.md, "Weights read in place").

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

/// What [`Bert::load`] reads from the model's `config.json`; other fields are ignored.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
}

/// A BERT encoder: token, position and type embeddings, then the layers.
pub(crate) struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    heads: usize,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

impl Bert {
    /// Loads the weights; names may carry a `bert.` prefix (Hugging Face's export) or not
    /// (sentence-transformers').
    pub(crate) fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Bert> {
        if config.hidden_act != "gelu" {
            candle_core::bail!("hidden_act {:?} is not supported: only \"gelu\" (erf)", config.hidden_act);
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size,
                config.num_attention_heads
            );
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
        let hidden = config.hidden_size;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(hidden, config.layer_norm_eps, vb);
        let embeddings = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let vb = vb.pp(format!("encoder.layer.{index}"));
                let attention = vb.pp("attention");
                Ok(Layer {
                    query: Dense::load(hidden, hidden, attention.pp("self.query"))?,
                    key: Dense::load(hidden, hidden, attention.pp("self.key"))?,
                    value: Dense::load(hidden, hidden, attention.pp("self.value"))?,
                    heads: config.num_attention_heads,
                    attention_out: Dense::load(hidden, hidden, attention.pp("output.dense"))?,
                    attention_norm: norm(attention.pp("output.LayerNorm"))?,
                    intermediate: Dense::load(hidden, config.intermediate_size, vb.pp("intermediate.dense"))?,
                    output: Dense::load(config.intermediate_size, hidden, vb.pp("output.dense"))?,
                    output_norm: norm(vb.pp("output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert {
            words: candle_nn::embedding(config.vocab_size, hidden, embeddings.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                embeddings.pp("position_embeddings"),
            )?,
            types: candle_nn::embedding(config.type_vocab_size, hidden, embeddings.pp("token_type_embeddings"))?,
            norm: norm(embeddings.pp("LayerNorm"))?,
            layers,
        })
    }

    /// The last layer's token vectors `[batch, tokens, hidden]` for `input_ids` and
    /// `type_ids` `[batch, tokens]`; `mask` (1 for a real token, 0 for padding) keeps padding
    /// out of every token's attention.
    pub(crate) fn forward(&self, input_ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, tokens) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, tokens as u32, input_ids.device())?;
        let embedded = (self.words.forward(input_ids)? + self.types.forward(type_ids)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        let mut hidden = self.norm.forward(&embedded)?;
        // 0 where a token may be attended to, the lowest f32 where it is padding:
        // `[batch, 1, 1, tokens]`, added to every head's scores.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(1)?.unsqueeze(1)?;
        let mask = (mask.ones_like()? - &mask)?.affine(f64::from(f32::MIN), 0.0)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &mask)?;
        }
        Ok(hidden)
    }
}

impl Layer {
    fn forward(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, tokens, width) = hidden.dims3()?;
        let head = width / self.heads;
        // `[batch, tokens, width]` to `[batch, heads, tokens, head]`.
        let by_head = |x: Tensor| x.reshape((batch, tokens, self.heads, head))?.transpose(1, 2)?.contiguous();
        let query = by_head(self.query.forward(hidden)?)?;
        let key = by_head(self.key.forward(hidden)?)?;
        let value = by_head(self.value.forward(hidden)?)?;
        let scores = (query.matmul(&key.t()?)? / (head as f64).sqrt())?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&value)?.transpose(1, 2)?.contiguous()?.reshape((batch, tokens, width))?;
        let attended = self.attention_norm.forward(&(self.attention_out.forward(&context)? + hidden)?)?;
        let expanded = self.intermediate.forward(&attended)?.apply_op1_no_bwd(&GeluErf)?;
        self.output_norm.forward(&(self.output.forward(&expanded)? + attended)?)
    }
}

/// Output columns in each block of a [`Dense`] layer's weight. 32 measured best on one thread
/// (a prompt alone: 6.5–7.6 ms a pass against 8.2–8.5 with 16 and 10.9–11.1 with 128).
const BLOCK_COLUMNS: usize = 32;

/// A linear layer, `x · Wᵀ + b`, with its weight kept the way the matrix kernel reads it.
///
/// candle's `Linear` hands gemm the `[out, in]` weight as stored; gemm, finding it strided,
/// copied it into panels before every product, a scalar gather that was 46% of a single
/// prompt's pass (a product of some 15 token rows reads the whole weight). Here `Wᵀ` is kept
/// in blocks of [`BLOCK_COLUMNS`] output columns, each `[in, columns]` row-major, which gemm
/// reads in place: a block (48 KiB for 384 inputs) stays in the core's cache while every row
/// of the input goes by. On more than one thread the blocks are shared out among them.
struct Dense {
    inputs: usize,
    outputs: usize,
    blocks: Vec<Block>,
    bias: Vec<f32>,
}

/// Columns `first .. first + width` of `Wᵀ`: `values[i * width + j]` is `W[first + j][i]`.
struct Block {
    first: usize,
    width: usize,
    values: Vec<f32>,
}

impl Dense {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
        let transposed = vb.get((outputs, inputs), "weight")?.to_dtype(DType::F32)?.t()?; // [in, out]
        let blocks = (0..outputs)
            .step_by(BLOCK_COLUMNS)
            .map(|first| {
                let width = BLOCK_COLUMNS.min(outputs - first);
                let values = transposed.narrow(1, first, width)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(Block { first, width, values })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bias = vb.get(outputs, "bias")?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(Dense { inputs, outputs, blocks, bias })
    }

    /// `[batch, tokens, in]` to `[batch, tokens, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, tokens, width) = x.dims3()?;
        let out = x.reshape((batch * tokens, width))?.apply_op1_no_bwd(self)?;
        out.reshape((batch, tokens, self.outputs))
    }

    /// `x · Wᵀ + b` for `rows` rows of `inputs` values, row-major; the blocks shared out among
    /// rayon's threads when `parallel`.
    fn product(&self, x: &[f32], rows: usize, parallel: bool) -> Vec<f32> {
        // What makes the reads in `multiply` sound, checked once for all blocks.
        assert_eq!(x.len(), rows * self.inputs, "dense: {} values are not {rows} rows of {}", x.len(), self.inputs);
        if rows == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(rows * self.outputs);
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        let target = Output(out.as_mut_ptr());
        if parallel {
            use rayon::prelude::*;
            self.blocks.par_iter().for_each(|block| self.multiply(block, x, rows, target));
        } else {
            for block in &self.blocks {
                self.multiply(block, x, rows, target);
            }
        }
        out
    }

    /// `out[r][block's columns] += x[r] · block` for every row `r`.
    #[allow(unsafe_code)]
    fn multiply(&self, block: &Block, x: &[f32], rows: usize, out: Output) {
        debug_assert_eq!(block.values.len(), self.inputs * block.width);
        // SAFETY: `x` holds `rows` rows of `inputs` values (`product` checks it) and `block`
        // `inputs` rows of `width` values (`load` made it so), as the strides below say; `out`
        // points at `rows * outputs` initialised values (`rows` at least 1, so `first` is
        // within them), of which gemm reads and writes row r's columns `first .. first +
        // width`, within the row since `first + width <= outputs`. No other thread touches those
        // columns (each block is multiplied once) and neither input overlaps `out`.
        unsafe {
            gemm::gemm(
                rows,
                block.width,
                self.inputs,
                out.0.add(block.first),
                1,
                self.outputs as isize,
                true,
                x.as_ptr(),
                1,
                self.inputs as isize,
                block.values.as_ptr(),
                1,
                block.width as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// Where [`Dense::multiply`] writes: the first of `rows * outputs` values, which each block
/// updates in its own columns only.
#[derive(Clone, Copy)]
struct Output(*mut f32);

// SAFETY: the threads that share an `Output` write disjoint columns of it (one block each) and
// the vector it points into outlives them (`rayon`'s `for_each` returns when all are done).
#[allow(unsafe_code)]
unsafe impl Send for Output {}
#[allow(unsafe_code)]
unsafe impl Sync for Output {}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "dense-blocked"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dense: the input is not contiguous");
        };
        let (rows, inputs) = layout.shape().dims2()?;
        if inputs != self.inputs {
            candle_core::bail!("dense: rows of {inputs} values for a layer of {} inputs", self.inputs);
        }
        let x = &storage.as_slice::<f32>()?[start..end];
        let out = self.product(x, rows, candle_core::utils::get_num_threads() > 1);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.outputs))))
    }
}

/// GELU with the exact (erf) form, `x/2 · (1 + erf(x/√2))`, over a contiguous f32 tensor.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-polynomial"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu: the input is not contiguous");
        };
        let values = &storage.as_slice::<f32>()?[start..end];
        Ok((CpuStorage::F32(values.iter().map(|&x| gelu_erf(x)).collect()), layout.shape().clone()))
    }
}

/// `x/2 · (1 + erf(x/√2))` with [`erf`].
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf for f32 as Eigen and XLA compute it: the input clamped to [-4, 4] (erf is ±1 in f32
/// beyond), then an odd degree-13 polynomial over an even degree-8 one. No branch and no call,
/// so a loop over a slice compiles to vector instructions; within 5e-7 of erf (tests).
///
/// Plain `*` and `+` on purpose: without the `fma` target feature `mul_add` is a call to
/// libm's software `fmaf`, which made the GELU slower than `erff`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_473_9e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hidden_act: &str, heads: usize) -> Config {
        Config {
            vocab_size: 10,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: heads,
            intermediate_size: 16,
            hidden_act: hidden_act.to_owned(),
            max_position_embeddings: 12,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    #[test]
    fn only_the_erf_gelu_and_whole_heads_load() {
        let zeros = || VarBuilder::zeros(DType::F32, &candle_core::Device::Cpu);
        let refused = |config: &Config| Bert::load(zeros(), config).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused(&config("gelu_new", 2)).contains("hidden_act \"gelu_new\" is not supported"));
        assert!(refused(&config("relu", 2)).contains("only \"gelu\""));
        assert!(refused(&config("gelu", 3)).contains("not a multiple of num_attention_heads 3"));
        assert!(refused(&config("gelu", 0)).contains("num_attention_heads 0"));
        // A model of zeros runs: every token comes out as the layer norm's bias (zero).
        let model = Bert::load(zeros(), &config("gelu", 2)).expect("a whole number of heads loads");
        let ids = Tensor::new(&[[1u32, 2, 3], [4, 0, 0]], &candle_core::Device::Cpu).expect("ids");
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 0, 0]], &candle_core::Device::Cpu).expect("mask");
        let hidden = model.forward(&ids, &ids.zeros_like().expect("types"), &mask).expect("a pass");
        assert_eq!(hidden.dims(), [2, 3, 8]);
    }

    #[test]
    fn a_dense_layer_is_candles_linear_in_blocks() {
        let device = candle_core::Device::Cpu;
        // 70 outputs: two whole blocks of 32 and one of 6.
        let (inputs, outputs) = (7, 70);
        let weight = Tensor::randn(0f32, 1.0, (outputs, inputs), &device).expect("weight");
        let bias = Tensor::randn(0f32, 1.0, outputs, &device).expect("bias");
        let tensors =
            std::collections::HashMap::from([("weight".to_owned(), weight.clone()), ("bias".to_owned(), bias.clone())]);
        let dense = Dense::load(inputs, outputs, VarBuilder::from_tensors(tensors, DType::F32, &device)).expect("load");
        assert_eq!(dense.blocks.iter().map(|b| (b.first, b.width)).collect::<Vec<_>>(), [(0, 32), (32, 32), (64, 6)]);
        let linear = candle_nn::Linear::new(weight, Some(bias));
        let x = Tensor::randn(0f32, 1.0, (2, 3, inputs), &device).expect("x");
        let expected =
            linear.forward(&x).expect("linear").flatten_all().expect("flat").to_vec1::<f32>().expect("values");
        let got = dense.forward(&x).expect("dense");
        assert_eq!(got.dims(), [2, 3, outputs]);
        let rows = x.flatten_all().expect("flat").to_vec1::<f32>().expect("values");
        for parallel in [false, true] {
            let got = if parallel {
                dense.product(&rows, 6, true)
            } else {
                got.flatten_all().expect("flat").to_vec1().expect("values")
            };
            assert_eq!(got.len(), expected.len());
            for (index, (a, b)) in got.iter().zip(&expected).enumerate() {
                assert!((a - b).abs() < 1e-5, "parallel {parallel}: value {index} is {a}, candle's {b}");
            }
        }
        // No rows, no product (and no pointer into an empty output).
        assert!(dense.product(&[], 0, false).is_empty() && dense.product(&[], 0, true).is_empty());
        // The wrong width is an error, not a read past the rows.
        let narrow = Tensor::zeros((1, 2, inputs - 1), DType::F32, &device).expect("narrow");
        let err = dense.forward(&narrow).expect_err("6 values a row");
        assert!(err.to_string().contains("rows of 6 values for a layer of 7 inputs"), "{err}");
    }

    #[test]
    fn the_gelu_of_a_tensor_is_the_gelu_of_each_value() {
        let values = [-3.0f32, -0.5, 0.0, 0.5, 3.0, 10.0];
        let tensor = Tensor::new(&values, &candle_core::Device::Cpu).expect("tensor");
        let out = tensor.apply_op1_no_bwd(&GeluErf).expect("gelu").to_vec1::<f32>().expect("values");
        assert_eq!(out, values.map(gelu_erf));
        // A transposed view is refused with an error, not read out of order.
        let matrix = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &candle_core::Device::Cpu).expect("matrix");
        let err = matrix.t().expect("view").apply_op1_no_bwd(&GeluErf).expect_err("not contiguous");
        assert!(err.to_string().contains("not contiguous"), "{err}");
    }

    #[test]
    fn erf_is_within_5e_7_of_erf_everywhere() {
        let mut worst = (0.0f64, 0.0f32);
        for step in -1_000_000..=1_000_000 {
            let x = step as f32 / 100_000.0;
            let error = (f64::from(erf(x)) - candle_core::cpu::erf::erf_f64(f64::from(x))).abs();
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(worst.0 < 5e-7, "erf({}) is {} off", worst.1, worst.0);
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), erf(4.0));
        assert_eq!(erf(-50.0), -erf(50.0));
        assert!((erf(50.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gelu_is_the_erf_form() {
        for x in [-6.0f32, -1.5, -0.25, 0.0, 0.3, 1.0, 2.5, 8.0] {
            let exact = 0.5 * f64::from(x) * (1.0 + candle_core::cpu::erf::erf_f64(f64::from(x) / 2f64.sqrt()));
            assert!((f64::from(gelu_erf(x)) - exact).abs() < 1e-6, "gelu({x}) = {} not {exact}", gelu_erf(x));
        }
        assert!(gelu_erf(f32::NAN).is_nan());
    }
}
