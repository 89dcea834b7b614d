//! Sentence embeddings from BERT's token embeddings: all-MiniLM-L6-v2's sentence-transformers
//! modules after the encoder, Pooling(mean) then Normalize. The encoder itself is
//! candle-transformers' `models::bert::BertModel`; this is the part of the pipeline it leaves
//! to the caller.

use candle_core::{D, DType, Result, Tensor};

/// `hidden`: (batch, seq, dim) token embeddings; `attention_mask`: (batch, seq), 1 for a token
/// and 0 for padding. Returns (batch, dim): the mean over the masked tokens, L2-normalized.
pub fn mean_pool_normalize(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // Clamped so that an all-padding row (never produced by the tokenizer) cannot divide by 0.
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn padding_is_left_out_of_the_mean_and_the_result_has_unit_length() {
        let device = Device::Cpu;
        // One sentence of two tokens, then a padding position whose embedding must not count.
        let hidden = Tensor::new(&[[[1f32, 0.0], [3.0, 4.0], [100.0, -100.0]]], &device).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &device).unwrap();
        let pooled = mean_pool_normalize(&hidden, &mask)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // mean (2, 2) -> (1/sqrt 2, 1/sqrt 2)
        let want = std::f32::consts::FRAC_1_SQRT_2;
        for got in &pooled[0] {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
