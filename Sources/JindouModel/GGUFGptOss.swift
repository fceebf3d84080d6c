import JindouNumerics
import JindouRouting

// llama.cpp's `gpt-oss`: transformers' GptOssForCausalLM as convert_hf_to_gguf.py writes it
// (conversion/gpt_oss.py `GptOssModel`) and llama.cpp reads it (src/models/openai-moe.cpp):
//   gpt-oss.{block_count, embedding_length, attention.head_count(_kv), attention.key_length,
//            rope.freq_base, rope.scaling.{type yarn, factor, original_context_length,
//            yarn_beta_fast/slow}, attention.sliding_window, expert_count,
//            expert_used_count, expert_feed_forward_length}
//   blk.N.{attn_norm, post_attention_norm (before the MoE), attn_q/k/v(.bias),
//          attn_output(.bias), attn_sinks, ffn_gate_inp(.bias),
//          ffn_{gate,up,down}_exps.weight (MXFP4 as released, stacked [E, out, in]) and .bias}
// What llama.cpp fixes rather than reads: sliding layers every other one from layer 0
// (`load_swa_pattern(ml, 2)`, unless attention.sliding_window_pattern says otherwise), the
// clamped SwiGLU's alpha 1.702 and limit 7 (`LLM_FFN_SWIGLU_OAI_MOE`), softmax over the
// chosen experts' logits (`SOFTMAX_WEIGHT`), YaRN's correction range floored and ceiled
// (`ggml_rope_yarn_corr_dims`: transformers' `truncate: true`) with cos/sin × mscale(factor),
// and 1/√head_dim as the softmax scale. Jindou reads the file with that meaning. The
// converter splits gate_up into gate and up (even and odd rows) and their biases, so the
// experts are read as stored, one slice each; MXFP4 experts multiply with ggml's 8-bit
// activation blocks, as llama.cpp's do.

extension GGUFTensorNames {
    /// Where `gpt-oss` names a layer tensor differently from the shared table.
    static let gptOssLayerSuffixes: [String: String] = [
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "self_attn.sinks": "attn_sinks.weight",
        "mlp.router.weight": "ffn_gate_inp.weight",
        "mlp.router.bias": "ffn_gate_inp.bias",
    ]
}

extension GGUFModelMetadata {
    func gptOss() throws -> ModelDescription {
        let layerCount = try positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden, readsRopeScaling: true)
        let contextLength = try positive(arch("context_length"))

        var scaling = RopeScaling.none
        switch value(arch("rope.scaling.type"))?.string ?? "none" {
        case "none": break
        case "yarn":
            let factor = try number(arch("rope.scaling.factor"))
            guard factor >= 1 else { throw error(arch("rope.scaling.factor"), "is \(factor); YaRN needs a factor of at least 1") }
            for key in ["rope.scaling.attn_factor", "rope.scaling.yarn_attn_factor", "rope.scaling.yarn_ext_factor",
                        "rope.scaling.yarn_log_multiplier"] where value(arch(key)) != nil {
                throw error(arch(key), "is not supported for gpt-oss (gpt-oss files do not carry it)")
            }
            scaling = .yarn(YarnScaling(
                factor: factor, originalMaxPositions: try positive(arch("rope.scaling.original_context_length"), default: contextLength),
                betaFast: try number(arch("rope.scaling.yarn_beta_fast"), default: 32),
                betaSlow: try number(arch("rope.scaling.yarn_beta_slow"), default: 1),
                attentionFactor: YarnScaling.mscale(factor), mscaleAllDim: nil, truncate: true))
        case let other:
            throw error(arch("rope.scaling.type"), "'\(other)' is not supported for gpt-oss (supported: none, yarn)")
        }

        // llama_model_base::load_swa_pattern: a per-layer array, or a period (default 2) whose
        // last layer is global.
        let window = try positive(arch("attention.sliding_window"))
        let slides: [Bool]
        if let pattern = value(arch("attention.sliding_window_pattern")), let list = pattern.array {
            guard list.count == layerCount else {
                throw error(arch("attention.sliding_window_pattern"), "has \(list.count) entries for \(layerCount) layers")
            }
            slides = list.map { ($0.integer ?? 0) != 0 }
        } else {
            let period = try positive(arch("attention.sliding_window_pattern"), default: 2)
            slides = (0..<layerCount).map { $0 % period < period - 1 }
        }

        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let moe = try positive(arch("expert_feed_forward_length"))
        let scale = try number(arch("expert_weights_scale"), default: 0)
        guard scale == 0 || scale == 1 else {
            throw error(arch("expert_weights_scale"), "is \(scale); gpt-oss does not scale its routed weights")
        }
        var attention = AttentionShape(
            heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
            ropeTheta: try number(arch("rope.freq_base"), default: 10_000), queryKeyNorm: false,
            queryKeyValueBias: file.tensor("blk.0.attn_q.bias") != nil, outputBias: file.tensor("blk.0.attn_output.bias") != nil,
            slidingWindow: nil, ropeScaling: scaling)
        attention.layerWindows = slides.map { $0 ? window : nil }
        attention.sinks = true
        var description = ModelDescription(
            architecture: .gptOss,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: attention,
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: Array(repeating: .sparse, count: layerCount),
            router: RouterConfiguration(expertCount: experts, expertsPerToken: used, scoring: .softmaxTopK, normalizeTopK: true),
            hasCorrectionBias: false,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: nil,
            maxPositionEmbeddings: contextLength,
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        description.moeNames.router = "router.weight"
        description.moeNames.routerBias = "router.bias"
        description.expertBiases = true
        description.expertActivation = .clampedSwiglu(alpha: 1.702, limit: 7)
        return try validated(description)
    }
}
