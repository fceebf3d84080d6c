// llama.cpp's `dots1`: rednote-hilab's dots.llm1 (transformers' Dots1ForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/dots1.py `Dots1Model`, on Qwen2MoeModel) and
// llama.cpp reads it (src/models/dots1.cpp):
//   dots1.{block_count, embedding_length, attention.head_count(_kv), attention.key_length,
//          rope.freq_base, leading_dense_block_count, feed_forward_length, the routed keys
//          of GGUFRoutedFeedForward.swift (expert_gating_func required: without it llama.cpp
//          aborts)}
//   blk.N.{attn_norm, attn_q/k/v (+ .bias), attn_output, attn_q_norm / attn_k_norm (per
//          head, before rotary), ffn_norm, ffn_gate/up/down (dense lead), ffn_gate_inp,
//          exp_probs_b.bias, ffn_{gate,up,down}_exps, ffn_{gate,up,down}_shexp}
// Rotary is NEOX-style over the whole head, as transformers computes; the tensors are read
// as stored under the shared names. llama.cpp's dots1 has no sliding windows and wants as
// many key/value heads as query heads (the released model); Jindou reads grouped files too.

extension GGUFModelMetadata {
    func dots1() throws -> ModelDescription {
        try validated(groupedQueryMoE(architecture: .dots1, family: "dots.llm1", defaultGating: nil))
    }
}
