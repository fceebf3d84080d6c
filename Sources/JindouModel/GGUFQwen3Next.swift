// llama.cpp's `qwen3next`: Qwen3-Next (transformers' Qwen3NextForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/qwen.py `Qwen3NextModel`, on Qwen2MoeModel) and
// llama.cpp reads it (src/models/qwen3next.cpp):
//   qwen3next.{block_count (trunk + nextn_predict_layers), embedding_length, context_length,
//              attention.{head_count, head_count_kv, key_length, value_length,
//              layer_norm_rms_epsilon, recurrent_layers (per-layer bools; else every
//              full_attention_interval-th layer is full attention, default 4)},
//              rope.{freq_base, dimension_count (the partial rotary width)}, expert_count,
//              expert_used_count, expert_feed_forward_length, expert_shared_feed_forward_length,
//              ssm.{conv_kernel, state_size (key head width), group_count (key heads),
//              time_step_rank (value heads), inner_size (value heads × value head width)}}
//   blk.N.{attn_norm, post_attention_norm, the gated full attention's attn_q (per head
//          [query | gate]) / attn_k / attn_v / attn_output / attn_q_norm / attn_k_norm, or the
//          Gated DeltaNet's attn_qkv + attn_gate (in_proj_qkvz split: [q | k | v] and z) or the
//          legacy ssm_in (in_proj_qkvz as it is), ssm_ba (in_proj_ba, grouped per key head),
//          ssm_conv1d [K, channels], ssm_dt.bias, ssm_a (−exp(A_log)), ssm_norm, ssm_out;
//          ffn_gate_inp, ffn_{gate,up,down}_exps, ffn_{gate,up,down}_shexp, ffn_gate_inp_shexp}
// The converter stores every zero-centred RMSNorm as 1 + w (the DeltaNet's gated norm is not
// zero-centred and is stored as it is), so the file's norms multiply as stored. Routing is
// softmax top-k, always renormalised (build_moe_ffn's norm_w), × expert_weights_scale when set.
// Every layer is MoE: the loader requires ffn_gate_inp in each (qwen3next has no dense layers).

import JindouRouting

extension GGUFTensorNames {
    static let qwen3NextLayerSuffixes: [String: String] = [
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "mlp.shared_expert.gate_proj.weight": "ffn_gate_shexp.weight",
        "mlp.shared_expert.up_proj.weight": "ffn_up_shexp.weight",
        "mlp.shared_expert.down_proj.weight": "ffn_down_shexp.weight",
        "mlp.shared_expert_gate.weight": "ffn_gate_inp_shexp.weight",
        "linear_attn.in_proj_qkvz.weight": "ssm_in.weight",
        "linear_attn.in_proj_qkv.weight": "attn_qkv.weight",
        "linear_attn.in_proj_z.weight": "attn_gate.weight",
        "linear_attn.in_proj_ba.weight": "ssm_ba.weight",
        "linear_attn.in_proj_b.weight": "ssm_beta.weight",
        "linear_attn.in_proj_a.weight": "ssm_alpha.weight",
        "linear_attn.conv1d.weight": "ssm_conv1d.weight",
        "linear_attn.dt_bias": "ssm_dt.bias",
        "linear_attn.A_log": "ssm_a",
        "linear_attn.norm.weight": "ssm_norm.weight",
        "linear_attn.out_proj.weight": "ssm_out.weight",
    ]
}

extension GGUFModelMetadata {
    /// `qwen3next`, or with `qwen35: true` llama.cpp's `qwen35moe` (Qwen3.5-MoE's text model,
    /// src/models/qwen35moe.cpp; conversion/qwen.py `Qwen3_5MoeTextModel`): the same keys and
    /// tensors with in_proj_b and in_proj_a as ssm_beta and ssm_alpha, the value heads reordered
    /// by `_LinearAttentionVReorderBase` from grouped per key head to tiled (so value head h
    /// reads key head h mod key heads), and interleaved M-RoPE over `rope.dimension_sections`.
    /// The vision tower lives in a separate mmproj file, which Jindou does not read.
    func qwen3Next(qwen35: Bool = false) throws -> ModelDescription {
        let (layerCount, prediction) = try decoderLayers()
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let moe = try positive(arch("expert_feed_forward_length"))
        let all = 0..<layerCount
        if let layer = all.first(where: { file.tensor("blk.\($0).ffn_gate_inp.weight") == nil }) {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.\(layer).ffn_gate_inp.weight' (qwen3next layers are all MoE)")
        }
        let shared = try sameInEveryLayer(["ffn_up_shexp.weight", "ffn_gate_shexp.weight", "ffn_down_shexp.weight", "ffn_gate_inp_shexp.weight"],
                                          layers: all)
        let linear = try linearAttentionShape()
        let recurrent = try recurrentLayers(layerCount)
        guard recurrent.contains(false) || layerCount == 0 else {
            throw error(arch("attention.recurrent_layers"), "marks every layer recurrent; Qwen3-Next has full-attention layers")
        }
        let recurrentLayers = all.filter { recurrent[$0] }
        var shape = linear
        shape.storedDecay = .negatedExponential
        if qwen35 {
            shape.projections = .split
            shape.tiledValueHeads = true
        } else {
            // The legacy files' fused in_proj_qkvz (ssm_in), or the converter's split one; every layer alike.
            let legacy = try sameInEveryLayer(["ssm_in.weight"], layers: recurrentLayers)
            if !legacy, let layer = recurrentLayers.first(where: { file.tensor("blk.\($0).attn_qkv.weight") == nil }) {
                throw GGUFError(path: file.path, reason: "missing tensor 'blk.\(layer).attn_qkv.weight' (nor the legacy 'ssm_in.weight') in linear-attention layer \(layer)")
            }
            shape.projections = legacy ? .fused : .splitQKVZ
        }

        var description = ModelDescription(
            architecture: qwen35 ? .qwen35Moe : .qwen3Next,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
                queryKeyNorm: true, queryKeyValueBias: false, outputBias: false, slidingWindow: nil),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: all.map { _ in .sparse },
            router: RouterConfiguration(expertCount: experts, expertsPerToken: used, scoring: .softmax, normalizeTopK: true,
                                        routedScalingFactor: try routedScalingFactor()),
            hasCorrectionBias: false,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: shared ? try positive(arch("expert_shared_feed_forward_length")) : nil,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        description.useQwen3NextBlocks(linear: shape, linearLayers: recurrent)
        // Stored as 1 + w by the converter: the file's weights multiply as they are.
        description.zeroCentredNorms = false
        description.ignoredPredictionLayers = prediction
        if qwen35 { description.attention.mropeSection = try mropeSections(rotary: rotary) }
        return try validated(description)
    }

    /// `rope.dimension_sections` (llama.cpp's four; Qwen's three, the fourth 0), covering the
    /// rotary dimensions' frequency pairs.
    func mropeSections(rotary: Int) throws -> [Int] {
        let key = arch("rope.dimension_sections")
        guard let list = value(key)?.array else { throw error(key, "is missing; qwen35moe's interleaved M-RoPE needs it") }
        let sections = list.compactMap(\.integer)
        guard sections.count == list.count, sections.count == 4, sections[3] == 0, sections.allSatisfy({ $0 >= 0 }),
              sections.reduce(0, +) * 2 == rotary else {
            throw error(key, "is \(sections); Jindou needs [t, h, w, 0] summing to rope.dimension_count / 2 = \(rotary / 2)")
        }
        return Array(sections.prefix(3))
    }

    /// The Gated DeltaNet's shape from the `ssm.*` keys, as llama.cpp's loader reads them: it
    /// takes the value head width to be the key head width (`ssm.state_size`), so a file whose
    /// `ssm.inner_size` says otherwise is refused.
    func linearAttentionShape() throws -> LinearAttentionShape {
        let keyHeads = try positive(arch("ssm.group_count"))
        let valueHeads = try positive(arch("ssm.time_step_rank"))
        let width = try positive(arch("ssm.state_size"))
        let inner = try positive(arch("ssm.inner_size"))
        guard valueHeads % keyHeads == 0 else {
            throw error(arch("ssm.time_step_rank"), "\(valueHeads) value heads are not a multiple of ssm.group_count \(keyHeads) key heads")
        }
        guard inner == valueHeads * width else {
            throw error(arch("ssm.inner_size"), "is \(inner); llama.cpp needs ssm.time_step_rank × ssm.state_size = \(valueHeads * width)")
        }
        return LinearAttentionShape(keyHeads: keyHeads, valueHeads: valueHeads, keyHeadDimension: width, valueHeadDimension: width,
                                    convolutionKernel: try positive(arch("ssm.conv_kernel")))
    }

    /// Which decoder layers are linear attention: `attention.recurrent_layers` (per-layer
    /// bools, trailing MTP blocks included), else all but every `full_attention_interval`-th.
    func recurrentLayers(_ layerCount: Int) throws -> [Bool] {
        let key = arch("attention.recurrent_layers")
        if let list = value(key)?.array {
            let flags: [Bool] = list.compactMap { if case .bool(let b) = $0 { b } else { nil } }
            guard flags.count == list.count, flags.count >= layerCount else { throw error(key, "is not an array of \(layerCount) bools") }
            return Array(flags.prefix(layerCount))
        }
        let interval = try positive(arch("full_attention_interval"), default: 4)
        return (0..<layerCount).map { ($0 + 1) % interval != 0 }
    }
}
